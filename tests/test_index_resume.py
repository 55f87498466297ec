"""Resumable builds: an interrupted ``mbm.scenarios.retrieval.index build`` continues where it stopped.

Over the shipped demo collection's photos and captions (``assets/retrieval/collection``, copied) and the
shipped checkpoint; no ../shared data. A build stopped mid-way (an exception, or ``kill -9`` of the
command line) and run again gives the index one uninterrupted build gives: the same items in the same
order, the same vectors (to the bit within one process; across processes to float rounding, since a
process that has run other work may pick other kernels), nothing encoded twice; a damaged chunk file is
reported and redone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
COLLECTION = ROOT / "assets" / "retrieval" / "collection"
CHUNK = 4


@pytest.fixture(scope="module")
def space():
    from mbm.scenarios.retrieval.model import load_space

    return load_space()


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "photos"
    shutil.copytree(COLLECTION, d)
    (d / "broken.jpg").write_bytes(b"not a jpeg" * 20)  # an unreadable photo is skipped, and stays skipped
    return d


@pytest.fixture(scope="module")
def reference(tmp_path_factory, space):
    """One uninterrupted build of the collection (chunks of CHUNK photos)."""
    from mbm.scenarios.retrieval.index_build import build

    d = tmp_path_factory.mktemp("ref") / "photos"
    shutil.copytree(COLLECTION, d)
    (d / "broken.jpg").write_bytes(b"not a jpeg" * 20)
    idx = build(d, d.parent / "ref.npz", progress=False, space=space, log=lambda *_: None, chunk=CHUNK)
    return idx


def same_index(a, b, exact: bool = True) -> None:
    from mbm.scenarios.retrieval.index import ARRAYS

    assert [it["path"] for it in a.items] == [it["path"] for it in b.items]
    assert len({it["path"] for it in a.items}) == len(a.items)  # nothing duplicated
    for k in ("caption", "transcript", "notes"):
        assert [it[k] for it in a.items] == [it[k] for it in b.items]
    for k in ARRAYS:  # every array the index file holds
        x, y = getattr(a, k), getattr(b, k)
        if exact or not np.issubdtype(np.asarray(x).dtype, np.floating):
            np.testing.assert_array_equal(x, y, err_msg=k)
        else:
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-5, err_msg=k)
    assert a.skipped == b.skipped


def counting(monkeypatch, fail_after: int | None = None) -> list[int]:
    """photo_features counts the photos it encodes; with ``fail_after``, it raises on that call."""
    import mbm.scenarios.retrieval.encoders as enc

    seen, real = [], getattr(enc.photo_features, "real", enc.photo_features)

    def features(photos, **k):
        if fail_after is not None and len(seen) == fail_after:
            raise KeyboardInterrupt
        seen.append(len(photos))
        return real(photos, **k)

    features.real = real
    monkeypatch.setattr(enc, "photo_features", features)
    return seen


def test_an_interrupted_build_resumes_to_the_same_index(folder, tmp_path, space, reference, monkeypatch):
    from mbm.scenarios.retrieval.index import Index
    from mbm.scenarios.retrieval.index_build import build
    from mbm.scenarios.retrieval.index_chunks import parts_dir

    out = tmp_path / "i.npz"
    seen = counting(monkeypatch, fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        build(folder, out, progress=False, space=space, log=lambda *_: None, chunk=CHUNK)
    assert not out.exists() and len(list(parts_dir(out).glob("chunk-*.npz"))) == 3
    done_before = sum(seen)
    seen = counting(monkeypatch)
    logs = []
    idx = build(folder, out, progress=False, space=space, log=logs.append, chunk=CHUNK)
    n_photos = len(reference) + 1  # + broken.jpg
    assert "12 already indexed by an interrupted build" in logs[0], logs
    assert done_before + sum(seen) == len(reference), "every readable photo encoded exactly once"
    same_index(idx, reference)
    same_index(Index.load(out), reference)
    assert not parts_dir(out).exists(), "the chunk files are removed once the index is written"
    assert n_photos == len(idx) + len(idx.skipped)


def test_a_damaged_or_foreign_chunk_is_reported_and_redone_never_used(folder, tmp_path, space, reference,
                                                                      monkeypatch):
    from mbm.scenarios.retrieval.index_build import build
    from mbm.scenarios.retrieval.index_chunks import parts_dir

    out = tmp_path / "i.npz"
    counting(monkeypatch, fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        build(folder, out, progress=False, space=space, log=lambda *_: None, chunk=CHUNK)
    chunks = sorted(parts_dir(out).glob("chunk-*.npz"), key=lambda p: p.stat().st_mtime_ns)
    assert len(chunks) == 4
    data = chunks[0].read_bytes()
    chunks[0].write_bytes(data[: len(data) // 2])  # truncated
    data = bytearray(chunks[1].read_bytes())
    data[len(data) // 3] ^= 0xFF  # one byte flipped inside the arrays
    chunks[1].write_bytes(bytes(data))
    (parts_dir(out) / f".{chunks[2].name}.123.tmp").write_bytes(data[:100])  # a chunk cut off while written
    # a chunk of another folder, renamed in (same format, wrong origin)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(COLLECTION / "fan_1.jpg", other / "fan_1.jpg")
    counting(monkeypatch)
    build(other, tmp_path / "o.npz", progress=False, space=space, log=lambda *_: None, chunk=CHUNK)
    counting(monkeypatch, fail_after=0)
    with pytest.raises(KeyboardInterrupt):
        build(other, tmp_path / "o2.npz", progress=False, space=space, log=lambda *_: None, chunk=CHUNK)
    assert list(parts_dir(tmp_path / "o2.npz").glob("chunk-*.npz")) == []
    seen = counting(monkeypatch)
    logs = []
    idx = build(folder, out, progress=False, space=space, log=logs.append, chunk=CHUNK)
    notes = [m for m in logs if "is not used" in m]
    assert len(notes) == 2 and any(chunks[0].name in m for m in notes) and any(chunks[1].name in m for m in notes)
    assert any("sha256" in m or "Bad" in m or "CRC" in m for m in notes if chunks[1].name in m), notes
    assert "8 already indexed by an interrupted build" in logs[-1 if len(logs) == 1 else 2], logs
    assert sum(seen) == len(reference) - 8, "the damaged chunks' photos are encoded again"
    same_index(idx, reference)
    assert not parts_dir(out).exists()


def test_a_chunk_from_another_folder_is_not_used(folder, tmp_path, space, monkeypatch):
    from mbm.scenarios.retrieval.index_build import build
    from mbm.scenarios.retrieval.index_chunks import parts_dir

    out = tmp_path / "i.npz"
    counting(monkeypatch, fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        build(folder, out, progress=False, space=space, log=lambda *_: None, chunk=CHUNK)
    moved = tmp_path / "moved"
    folder.rename(moved)
    counting(monkeypatch, fail_after=0)
    logs = []
    with pytest.raises(KeyboardInterrupt):
        build(moved, out, progress=False, space=space, log=logs.append, chunk=CHUNK)
    assert any("another folder or checkpoint" in m for m in logs), logs
    assert list(parts_dir(out).glob("chunk-*.npz")) == []


def test_a_changed_photo_in_a_finished_chunk_is_indexed_again(folder, tmp_path, space, reference, monkeypatch):
    from mbm.scenarios.retrieval.index_build import build

    out = tmp_path / "i.npz"
    seen = counting(monkeypatch, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        build(folder, out, progress=False, space=space, log=lambda *_: None, chunk=CHUNK)
    before = sum(seen)
    first = min(p for p in folder.iterdir() if p.suffix == ".jpg" and p.name != "broken.jpg")
    shutil.copy(folder / "tv_1.jpg", first)  # changed after its chunk was written
    seen = counting(monkeypatch)
    idx = build(folder, out, progress=False, space=space, log=lambda *_: None, chunk=CHUNK)
    assert sum(seen) == len(reference) - before + 1
    paths = [it["path"] for it in idx.items]
    for k in ("photo_sem", "app"):  # the new pixels' vectors, not the finished chunk's
        np.testing.assert_allclose(getattr(idx, k)[paths.index(first.name)], getattr(idx, k)[paths.index("tv_1.jpg")],
                                   atol=1e-5)


def test_bad_chunk_sizes_are_a_message(folder, tmp_path, space):
    from mbm.errors import InputError
    from mbm.scenarios.retrieval.index_build import build

    for bad in (0, -3, 2.5, True):
        with pytest.raises(InputError, match="chunk"):
            build(folder, tmp_path / "x.npz", progress=False, space=space, log=lambda *_: None, chunk=bad)


def test_kill_9_of_the_command_line_loses_nothing(folder, tmp_path, space, reference):
    """The real thing: ``python -m mbm.scenarios.retrieval.index build`` killed with SIGKILL once two chunks are written (each
    network pass slowed to 0.3 s so the kill lands mid-build), then run again to the end."""
    from mbm.scenarios.retrieval.index import Index
    from mbm.scenarios.retrieval.index_chunks import parts_dir

    out = tmp_path / "i.npz"
    slow = textwrap.dedent(f"""
        import sys, time
        import mbm.scenarios.retrieval.encoders as enc
        real = enc.photo_features
        enc.photo_features = lambda photos, **k: (time.sleep(0.3), real(photos, **k))[1]
        from mbm.scenarios.retrieval.index import main
        sys.exit(main(["build", {str(folder)!r}, "--out", {str(out)!r}, "--chunk", "{CHUNK}", "--quiet"]))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", slow], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while len(list(parts_dir(out).glob("chunk-*.npz"))) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the build ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    done = len(list(parts_dir(out).glob("chunk-*.npz")))
    assert 2 <= done < 8
    run = subprocess.run([sys.executable, "-m", "mbm.scenarios.retrieval.index", "build", str(folder), "--out", str(out), "--chunk",
                          str(CHUNK), "--quiet"], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"{done * CHUNK} already indexed by an interrupted build" in run.stdout, run.stdout
    same_index(Index.load(out), reference, exact=False)  # built in other processes than the reference
