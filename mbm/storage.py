"""Atomic file writes: a crash mid-write leaves the previous file intact, never half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: str | Path, write: Callable[[IO], None], binary: bool = True, fsync: bool = True) -> Path:
    """Call ``write(f)`` on a temp file beside ``path``, fsync it, then rename it over ``path``.

    The rename (``os.replace``) is atomic on POSIX file systems, so readers see the
    old file or the new one, whatever happens in between. ``fsync=False`` skips the
    flush to disk (for throwaway files, where only readers' atomicity matters).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)  # the rename itself survives a power cut only once the folder is synced
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def add_to_results(path: str | Path, numbers: dict) -> Path:
    """Merge ``numbers`` into the results JSON at ``path`` (created if missing), written atomically.

    The evaluation's commands each refresh their own keys of one file (e.g. the app's
    ``assets/voice_control/eval_results.json``) and leave the others as they were.
    """
    import json

    path = Path(path)
    results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    results.update(numbers)
    return atomic_write(path, lambda f: f.write(json.dumps(results, indent=1).encode() + b"\n"))


def fsync_dir(folder: str | Path) -> None:
    """fsync a directory (its entries: renames, new files); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: str | Path, min_age_s: float = 60.0) -> list[str]:
    """Delete temp files that :func:`atomic_write` left in ``folder`` when a writer was killed.

    Only files named ``.<name>-*.tmp`` older than ``min_age_s`` (a write in progress is younger).
    Returns the names removed.
    """
    import time

    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for p in folder.glob(".*-*.tmp"):
        try:
            if p.is_file() and now - p.stat().st_mtime >= min_age_s:
                p.unlink()
                removed.append(p.name)
        except OSError:
            continue
    return removed
