"""The app's idle memory: garbage cycles left by requests are collected while the server is idle."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False, cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_idle_trimmer_collects_a_cycle_the_generational_collector_left():
    # With automatic collection off, only tame_malloc's periodic gc.collect() can free the cycle
    # (a failed request's traceback -> frame -> its big locals is such a cycle).
    printed = run("""
        import gc, time, weakref
        from mbm.limits import tame_malloc
        gc.disable()

        class Frame:
            pass

        frame = Frame()
        frame.self = frame
        frame.payload = bytearray(50_000_000)
        alive = weakref.ref(frame)
        del frame
        time.sleep(0.3)
        before = alive() is not None
        assert tame_malloc(trim_every_s=0.05)
        deadline = time.time() + 5
        while alive() is not None and time.time() < deadline:
            time.sleep(0.05)
        print(before, alive() is None)
    """)
    assert printed == "True True"


def test_freeze_startup_objects_hides_what_exists_and_not_what_comes_later():
    printed = run("""
        import gc
        from mbm.limits import freeze_startup_objects
        freeze_startup_objects()
        frozen = gc.get_freeze_count()
        later = [[i] for i in range(1000)]
        print(frozen > 1000, gc.get_freeze_count() == frozen, any(o is later for o in gc.get_objects()))
    """)
    assert printed == "True True True"


def test_the_app_never_imports_triton():
    """timm -> torchvision.ops -> torch._dynamo imported triton (74 MB resident, a GPU compiler the CPU server
    never runs); app.py marks it absent before torch loads, and torch takes it as not installed."""
    printed = run("""
        import sys
        import app
        import torch._dynamo, torch.utils._triton
        print(sys.modules.get("triton") is None, torch.utils._triton.has_triton())
    """)
    assert printed.splitlines()[-1] == "True False"
