"""The resumable part of a build: every finished chunk of photos is kept in a file until the index is written.

A chunk file (``.INDEX.parts/chunk-KEY.npz``) holds its items (caption, transcript, notes, skipped messages),
their per-photo arrays and a sha256 of those arrays; it is written to a temporary file and renamed into place
whole, so a build stopped any way, ``kill -9`` included, continues from the chunks it finished.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from mbm.scenarios.retrieval.index import OPEN_ARRAYS
from mbm.scenarios.retrieval.index_checks import item_problem, member_header, read_member
from mbm.storage import atomic_write

CHUNK_PHOTOS = 256  # photos per resumable chunk file of a build (a kill -9 loses at most one chunk's work)
CHUNK_FORMAT = "mbm-retrieval-index-chunk-2"  # 2: + the open-vocabulary arrays
CHUNK_ARRAYS = ("photo_sem", "app", "extra_sem", "extra_mask", *OPEN_ARRAYS)  # one row per photo
CHUNK_DTYPES = {"extra_mask": np.dtype(bool), "name_mask": np.dtype(bool), "concept_ids": np.dtype(np.int16)}


def parts_dir(out: Path) -> Path:
    """Where a build of ``out`` keeps its finished chunks until ``out`` is written (then it is removed)."""
    out = Path(out)
    return out.with_name(f".{out.name}.parts")


def chunk_digest(arrays: dict[str, np.ndarray]) -> str:
    """A sha256 of a chunk's arrays (names, dtypes, shapes and bytes), to tell a damaged chunk file."""
    h = hashlib.sha256()
    for k in CHUNK_ARRAYS:
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_chunk(parts: Path, folder: Path, ck: str, items: list[dict], arrays: dict[str, np.ndarray],
                 bad: list[dict], heard: list[float]) -> Path:
    """One finished chunk of a build: its items (with their caption, transcript, notes, skipped
    messages), their arrays and a sha256 of the arrays, written atomically."""
    manifest = {"format": CHUNK_FORMAT, "folder": str(folder), "checkpoint": ck, "items": items, "bad": bad,
                "heard_s": heard, "sha256": chunk_digest(arrays)}
    buf = io.BytesIO()
    np.savez(buf, **{k: arrays[k] for k in CHUNK_ARRAYS},
             manifest=np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8))
    key = hashlib.sha256(json.dumps([[it["path"], it["stamp"]] for it in items] + bad).encode()).hexdigest()[:20]
    path = parts / f"chunk-{key}.npz"
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path


def read_chunk(path: Path, folder: Path, ck: str, dims: dict[str, int]) -> tuple[dict, dict[str, np.ndarray]]:
    """A chunk file written by :func:`write_chunk`, checked whole: a ``ValueError`` saying why it cannot be
    used (truncated, damaged, another folder or checkpoint, arrays that do not match their digest)."""
    from mbm.limits import MAX_MANIFEST_BYTES

    try:
        with zipfile.ZipFile(path) as z:
            shape, dtype = member_header(z, "manifest")
            if dtype != np.uint8 or len(shape) != 1 or shape[0] > MAX_MANIFEST_BYTES:
                raise ValueError("the manifest is not a byte array of a bounded size")
            man = json.loads(read_member(z, "manifest").tobytes().decode())
            if not isinstance(man, dict) or man.get("format") != CHUNK_FORMAT:
                raise ValueError(f"not a chunk of format {CHUNK_FORMAT}")
            if man.get("folder") != str(folder) or man.get("checkpoint") != ck:
                raise ValueError("written for another folder or checkpoint")
            items, bad, heard = man.get("items"), man.get("bad"), man.get("heard_s")
            if not isinstance(items, list) or not isinstance(bad, list) or not isinstance(heard, list) \
                    or len(heard) != len(items):
                raise ValueError("its lists of items are malformed")
            for it in items + bad:
                problem = item_problem(it)
                if problem or not isinstance(it.get("stamp"), list):
                    raise ValueError(f"an item {problem or 'has no file stamp'}")
            m = len(items)
            arrays = {}
            for k in CHUNK_ARRAYS:
                shape, dtype = member_header(z, k)
                dt = CHUNK_DTYPES.get(k, np.dtype(np.float32))
                want = ((m,), dt) if dt == np.dtype(bool) else ((m, dims[k]), dt)
                if (tuple(shape), dtype) != want:
                    raise ValueError(f"{k} is {shape} {dtype}, not {want[0]} {want[1]}")
                arrays[k] = read_member(z, k)
    except ValueError:
        raise
    except (OSError, KeyError, EOFError, RecursionError, zipfile.BadZipFile) as e:
        raise ValueError(f"unreadable ({type(e).__name__}: {str(e)[:80]})") from None
    if chunk_digest(arrays) != man.get("sha256"):
        raise ValueError("its arrays do not match their sha256")
    return man, arrays


def read_chunks(parts: Path, folder: Path, ck: str, dims: dict[str, int], log) -> dict[str, tuple]:
    """Every usable finished chunk of an interrupted build: path -> (item, row arrays, heard seconds) for
    indexed photos, (bad entry, None, 0) for unreadable ones. Damaged chunks are reported and deleted
    (their photos are indexed again), never used."""
    done: dict[str, tuple] = {}
    if not parts.is_dir():
        return done
    for tmp in parts.glob(".*.tmp"):  # a chunk being written when the build was killed: never renamed, never used
        tmp.unlink(missing_ok=True)
    for f in sorted(parts.glob("chunk-*.npz")):
        try:
            man, arrays = read_chunk(f, folder, ck, dims)
        except ValueError as e:
            log(f"note: {f.name} of the interrupted build is not used ({e}); its photos are indexed again")
            f.unlink(missing_ok=True)
            continue
        for r, it in enumerate(man["items"]):
            done[it["path"]] = (it, {k: arrays[k][r] for k in CHUNK_ARRAYS}, float(man["heard_s"][r]))
        for b in man["bad"]:
            done[b["path"]] = (b, None, 0.0)
    return done

