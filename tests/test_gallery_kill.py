"""A process killed with SIGKILL in the middle of gallery writes leaves a loadable gallery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from mbm.scenarios.portrait.gallery import Gallery

ROOT = Path(__file__).resolve().parent.parent

WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from mbm.scenarios.portrait.gallery import Gallery

    folder, = sys.argv[1:]
    rng = np.random.default_rng(0)
    round_ = 0
    while True:  # rewrite a large gallery forever, until killed
        g = Gallery()
        for i in range(300):
            g.add(f"person {i}", rng.normal(size=(1, 128)), voice=rng.normal(size=256), meta={"round": round_})
        g.save(folder)
        print(round_, flush=True)
        round_ += 1
""")


def _gallery(n: int) -> Gallery:
    rng = np.random.default_rng(1)
    g = Gallery()
    for i in range(n):
        g.add(f"old {i}", rng.normal(size=(1, 128)))
    return g


def test_sigkill_during_writes_leaves_a_whole_gallery(tmp_path):
    folder = tmp_path / "gallery"
    _gallery(3).save(folder)
    for delay in (0.0, 0.013, 0.031, 0.057):  # kill at different points of the write loop
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], cwd=ROOT, stdout=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        proc.stdout.readline()  # one gallery written: the writer is now inside its write loop
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        loaded = Gallery.load(folder)  # must parse: the old gallery or a complete new one
        names = loaded.names()
        assert names == [f"old {i}" for i in range(3)] or names == [f"person {i}" for i in range(300)]
        leftovers = [p.name for p in folder.iterdir() if p.name != "gallery.json"]
        # A killed writer may leave its temp file behind, but never in place of the gallery.
        assert all(name.endswith(".tmp") for name in leftovers), leftovers
