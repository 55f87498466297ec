"""A searchable collection: ``python -m mbm.scenarios.retrieval.index build FOLDER --out INDEX`` and the index format.

FOLDER holds photos, each with an optional same-name ``.txt`` caption and/or ``.wav``/``.mp3`` voice
note (``lamp1.jpg``, ``lamp1.txt``, ``lamp1.wav``). Re-running adds new and changed files only
(unchanged ones keep their vectors; removed ones drop out); a progress bar shows the work (photos/s,
ETA); files that cannot be read are skipped and listed. Work is kept in chunk files of 256 photos
(``.INDEX.parts/`` beside the index, each renamed into place whole): a build stopped any way, ``kill -9``
included, continues from them when run again, and ends with the index an uninterrupted build writes.

The index is ONE ``.npz`` file (read with ``allow_pickle=False``: plain arrays only) that also holds
its JSON manifest as a uint8 array; it is written to a temporary file, fsynced and renamed over the
old one, so an interrupted build never loses the existing index.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mbm.errors import InputError
from mbm.storage import atomic_write

# 2: + each item's top ImageNet concepts, and the MiniLM vectors of its caption/transcript and of its file and
# folder names (the open vocabulary)
FORMAT = "mbm-retrieval-index-2"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff")
VOICE_SUFFIXES = (".wav", ".mp3")
MAX_CAPTION_CHARS = 2000
MAX_ITEMS = 1_000_000


def checkpoint_id(path: Path | None = None) -> str:
    from mbm.paths import RETRIEVAL_CHECKPOINT

    return hashlib.sha256(Path(path or RETRIEVAL_CHECKPOINT).read_bytes()).hexdigest()[:16]


@dataclass
class Index:
    """Item vectors and what each item is. ``root``: the folder the relative paths are under."""

    vectors: np.ndarray  # (N, 192) unit item vectors
    photo_sem: np.ndarray  # (N, 128)
    app: np.ndarray  # (N, 64)
    extra_sem: np.ndarray  # (N, 128) caption/voice-note meaning (zeros where none)
    extra_mask: np.ndarray  # (N,) bool
    items: list[dict]  # {"path", "size", "mtime_ns", "caption", "transcript", "notes"}
    root: Path
    checkpoint: str = ""
    skipped: list[str] = field(default_factory=list)
    concept_ids: np.ndarray | None = None  # (N, TOP_K) int16: the photo's most probable ImageNet classes
    concept_p: np.ndarray | None = None  # (N, TOP_K) float32: their probabilities
    text_vec: np.ndarray | None = None  # (N, 384) unit MiniLM vector of the caption + transcript (where extra_mask)
    name_vec: np.ndarray | None = None  # (N, 384) unit MiniLM vector of the file and folder names' words
    name_mask: np.ndarray | None = None  # (N,) bool: the names have words

    def __post_init__(self):  # an index made in code without them: zero open-vocabulary arrays
        for k, a in open_arrays(len(self.items)).items():
            if getattr(self, k) is None:
                setattr(self, k, a)

    def open_vocabulary(self) -> bool:
        """Whether the open-vocabulary arrays match the items (an index built by :func:`build`)."""
        n = len(self.vectors)
        return all(a is not None and len(a) == n for a in (self.concept_ids, self.concept_p, self.text_vec,
                                                            self.name_vec, self.name_mask, self.extra_mask))

    def __len__(self) -> int:
        return len(self.items)

    def vocabulary(self) -> tuple[str, ...]:
        """Phrases the speech recogniser listens for: captions, transcripts, file and folder names."""
        out = set()
        for it in self.items:
            for t in (it.get("caption") or "", it.get("transcript") or ""):
                out.update(p.strip() for p in t.replace(",", ".").split(".") if p.strip())
            out.add(Path(it["path"]).stem.replace("_", " ").replace("-", " "))
            out.add(Path(it["path"]).parent.name.replace("_", " "))
        return tuple(sorted(o[:80] for o in out if o and not o[0].isdigit()))

    def path_of(self, i: int) -> Path:
        return self.root / self.items[i]["path"]

    # --- file format ----------------------------------------------------------------------------
    def save(self, out: Path) -> None:
        out = Path(out)
        try:  # a collection beside its index (the shipped demo) keeps working from any checkout
            rel = os.path.relpath(Path(self.root).resolve(), out.resolve().parent)
        except ValueError:
            rel = None
        manifest = {"format": FORMAT, "root": str(self.root), "root_relative": rel, "checkpoint": self.checkpoint,
                    "items": self.items, "skipped": self.skipped}
        buf = io.BytesIO()
        np.savez(buf, vectors=self.vectors.astype(np.float32), photo_sem=self.photo_sem.astype(np.float32),
                 app=self.app.astype(np.float32), extra_sem=self.extra_sem.astype(np.float32),
                 extra_mask=self.extra_mask.astype(bool), concept_ids=self.concept_ids.astype(np.int16),
                 concept_p=self.concept_p.astype(np.float32), text_vec=self.text_vec.astype(np.float32),
                 name_vec=self.name_vec.astype(np.float32), name_mask=self.name_mask.astype(bool),
                 manifest=np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8))
        atomic_write(out, lambda f: f.write(buf.getvalue()))  # whole or not at all, fsynced

    @classmethod
    def load(cls, path: Path, root: Path | None = None) -> Index:
        """Read an index written by :meth:`save`; an :class:`InputError` (never a traceback) for anything else.

        Nothing is decompressed before it is checked: the manifest's declared size first (at most
        ``MBM_MAX_MANIFEST_MB``), then every array's declared shape and dtype (read from its .npy header
        inside the zip) against the manifest's item count, and all arrays together against
        ``MBM_MAX_INDEX_MB``. Item paths must be relative and stay under the collection's folder.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no index at {path}; build one with `python -m mbm.scenarios.retrieval.index build FOLDER --out {path}`")
        try:
            with zipfile.ZipFile(path) as z:
                manifest = _read_manifest(z, path)
                n = len(manifest["items"])
                _check_arrays(z, n, path)
                arrays = {k: _read_member(z, k) for k in ARRAYS}
                _check_open_vocabulary(arrays, path)
        except InputError:
            raise
        except (OSError, ValueError, KeyError, EOFError, RecursionError, zipfile.BadZipFile) as e:
            raise InputError(f"{path} is not a readable retrieval index ({type(e).__name__})") from None
        r = Path(root) if root is not None else Path(manifest["root"])
        rel = manifest.get("root_relative")
        if root is None and rel is not None and not rel.startswith("..") and (path.parent / rel).is_dir():
            r = (path.parent / rel).resolve()
        return cls(items=manifest["items"], root=r, checkpoint=manifest.get("checkpoint", ""),
                   skipped=manifest.get("skipped", []), **arrays)

    @classmethod
    def empty(cls, root: Path) -> Index:
        from mbm.scenarios.retrieval.model import APP_DIM, SEM_DIM, VECTOR_DIM

        z = lambda d: np.zeros((0, d), np.float32)
        return cls(z(VECTOR_DIM), z(SEM_DIM), z(APP_DIM), z(SEM_DIM), np.zeros(0, bool), [], Path(root))


ARRAYS = ("vectors", "photo_sem", "app", "extra_sem", "extra_mask", "concept_ids", "concept_p", "text_vec", "name_vec",
          "name_mask")


def _check_open_vocabulary(arrays: dict, path: Path) -> None:
    """The concept ids name ImageNet classes and the text vectors are MiniLM's width (else a message)."""
    from mbm.scenarios.retrieval.encoders import N_CLASSES, TEXT_DIM

    ids = arrays["concept_ids"]
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= N_CLASSES):
        raise InputError(f"{path}: concept_ids name classes outside 0..{N_CLASSES - 1}")
    if arrays["text_vec"].shape[1] != TEXT_DIM:
        raise InputError(f"{path}: text_vec is {arrays['text_vec'].shape[1]} wide; the text model's vectors are "
                         f"{TEXT_DIM}")


def _member_header(z: zipfile.ZipFile, name: str) -> tuple[tuple, np.dtype]:
    """The declared shape and dtype of ``name``.npy in the zip, read from its header alone."""
    from numpy.lib import format as npy

    with z.open(f"{name}.npy") as f:
        version = npy.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = npy.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = npy.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy format {version}")
    if dtype.hasobject:
        raise ValueError("object arrays")
    return tuple(shape), dtype


def _read_member(z: zipfile.ZipFile, name: str) -> np.ndarray:
    from numpy.lib import format as npy

    with z.open(f"{name}.npy") as f:
        return npy.read_array(f, allow_pickle=False)


def _read_manifest(z: zipfile.ZipFile, path: Path) -> dict:
    from mbm.limits import MAX_MANIFEST_BYTES, size_text

    shape, dtype = _member_header(z, "manifest")
    if dtype != np.uint8 or len(shape) != 1:
        raise InputError(f"{path}: the manifest is not a byte array")
    if shape[0] > MAX_MANIFEST_BYTES:
        raise InputError(f"{path}: the manifest declares {size_text(shape[0])}; at most "
                         f"{size_text(MAX_MANIFEST_BYTES)} are read (MBM_MAX_MANIFEST_MB)")
    manifest = json.loads(_read_member(z, "manifest").tobytes().decode())
    if isinstance(manifest, dict) and manifest.get("format") == "mbm-retrieval-index-1":
        raise InputError(f"{path} was built before search knew every ImageNet concept (index format 1); rebuild it "
                         f"with `python -m mbm.scenarios.retrieval.index build FOLDER --out {path}`")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path} is not a retrieval index of format {FORMAT}")
    items = manifest.get("items")
    if not isinstance(items, list):
        raise InputError(f"{path}: the manifest's items are not a list")
    if len(items) > MAX_ITEMS:
        raise InputError(f"{path}: {len(items)} items; an index holds at most {MAX_ITEMS}")
    for k, it in enumerate(items):
        problem = _item_problem(it)
        if problem:
            raise InputError(f"{path}: item {k} {problem}")
    if not isinstance(manifest.get("root"), str) or not isinstance(manifest.get("root_relative"), (str, type(None))):
        raise InputError(f"{path}: the manifest's root is not a folder name")
    if not isinstance(manifest.get("checkpoint", ""), str):
        raise InputError(f"{path}: the manifest's checkpoint is not text")
    skipped = manifest.get("skipped", [])
    if not isinstance(skipped, list) or not all(isinstance(x, str) for x in skipped):
        raise InputError(f"{path}: the manifest's skipped list is not a list of text")
    return manifest


def _item_problem(it) -> str | None:
    """Why a manifest item cannot be used (None if it can): its path must stay under the collection."""
    if not isinstance(it, dict):
        return "is not an object"
    p = it.get("path")
    if not isinstance(p, str) or not p or "\0" in p:
        return "has no file path"
    parts = p.replace("\\", "/").split("/")
    if p.startswith(("/", "\\")) or Path(p).is_absolute() or ":" in parts[0] or ".." in parts:
        return f"names a path outside the collection's folder ({p[:80]!r}); item paths must be relative"
    for key in ("caption", "transcript"):
        if not isinstance(it.get(key, ""), str):
            return f"has a {key} that is not text"
    notes = it.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(x, str) for x in notes):
        return "has notes that are not a list of text"
    return None


def _check_arrays(z: zipfile.ZipFile, n: int, path: Path) -> None:
    """Every array's declared shape and dtype against the item count and the size bounds, before any is read."""
    from mbm.limits import MAX_INDEX_BYTES, MAX_INDEX_DIM, size_text

    total, widths = 0, {}
    for name in ARRAYS:
        shape, dtype = _member_header(z, name)
        if name in ("extra_mask", "name_mask"):
            ok = dtype == np.bool_ and shape == (n,)
            want = f"({n},) bool"
        elif name == "concept_ids":
            ok = dtype == np.int16 and len(shape) == 2 and shape[0] == n and 1 <= shape[1] <= 1000
            want = f"({n}, 1..1000) int16"
            widths[name] = shape[1] if len(shape) == 2 else None
        else:
            ok = dtype == np.float32 and len(shape) == 2 and shape[0] == n and 1 <= shape[1] <= MAX_INDEX_DIM
            want = f"({n}, 1..{MAX_INDEX_DIM}) float32"
            widths[name] = shape[1] if len(shape) == 2 else None
        if not ok:
            raise InputError(f"{path}: {name} is declared {shape} {dtype}, but the manifest's {n} items need {want}")
        total += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if widths["concept_ids"] != widths["concept_p"]:
        raise InputError(f"{path}: concept_ids and concept_p differ in width")
    if widths["text_vec"] != widths["name_vec"]:
        raise InputError(f"{path}: text_vec and name_vec differ in width")
    if widths["photo_sem"] != widths["extra_sem"]:
        raise InputError(f"{path}: photo_sem and extra_sem differ in width ({widths['photo_sem']} vs "
                         f"{widths['extra_sem']})")
    if total > MAX_INDEX_BYTES:
        raise InputError(f"{path}: its arrays declare {size_text(total)}; at most {size_text(MAX_INDEX_BYTES)} "
                         "are read (MBM_MAX_INDEX_MB)")


def scan(folder: Path) -> tuple[list[Path], list[str]]:
    """Photos under folder (recursively, sorted) and the files that are neither photo nor companion."""
    photos, other = [], []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if p.suffix.lower() in PHOTO_SUFFIXES:
            photos.append(p)
        elif p.suffix.lower() not in (".txt", *VOICE_SUFFIXES, ".npz", ".json", ".md"):
            other.append(str(p.relative_to(folder)))
    return photos, other


def read_caption(p: Path) -> tuple[str, list[str]]:
    """A caption file's text, reading at most what the cap can use (a 2 GB .txt is not read whole)."""
    notes = []
    with open(p, "rb") as f:
        raw = f.read(MAX_CAPTION_CHARS * 4)
    text = raw.decode("utf-8", errors="replace").strip()
    if len(raw) == MAX_CAPTION_CHARS * 4:  # cut: a character split at the end is not "invalid UTF-8"
        text = text.rstrip("\ufffd")
    if len(text) > MAX_CAPTION_CHARS:
        text = text[:MAX_CAPTION_CHARS]
        notes.append(f"caption cut to {MAX_CAPTION_CHARS} characters")
    if "\ufffd" in text:
        notes.append("caption is not valid UTF-8; unreadable characters replaced")
    return text, notes


def _load_or_error(path: Path):
    """The 224 px photo, or the reason it cannot be read (a string)."""
    from mbm.scenarios.retrieval.encoders import load_photo

    try:
        return load_photo(path)
    except Exception as e:  # noqa: BLE001 - the caller lists it
        return str(e)[:200] or type(e).__name__


CHUNK_PHOTOS = 256  # photos per resumable chunk file of a build (a kill -9 loses at most one chunk's work)
BATCH_PHOTOS = 32  # photos per network pass
CHUNK_FORMAT = "mbm-retrieval-index-chunk-2"  # 2: + the open-vocabulary arrays
OPEN_ARRAYS = ("concept_ids", "concept_p", "text_vec", "name_vec", "name_mask")  # the open vocabulary
CHUNK_ARRAYS = ("photo_sem", "app", "extra_sem", "extra_mask", *OPEN_ARRAYS)
CHUNK_DTYPES = {"extra_mask": np.dtype(bool), "name_mask": np.dtype(bool), "concept_ids": np.dtype(np.int16)}


def open_arrays(n: int) -> dict[str, np.ndarray]:
    """Zero open-vocabulary arrays for n items (filled by :func:`add_open_vocabulary`)."""
    from mbm.scenarios.retrieval.concepts import TOP_K
    from mbm.scenarios.retrieval.encoders import TEXT_DIM

    return {"concept_ids": np.zeros((n, TOP_K), np.int16), "concept_p": np.zeros((n, TOP_K), np.float32),
            "text_vec": np.zeros((n, TEXT_DIM), np.float32), "name_vec": np.zeros((n, TEXT_DIM), np.float32),
            "name_mask": np.zeros(n, bool)}


def add_open_vocabulary(arrays: dict[str, np.ndarray], rows: list[int], probs: np.ndarray, paths: list[str],
                        text_rows: list[int] = (), text_vecs: np.ndarray | None = None) -> None:
    """Fill rows' top ImageNet concepts (from the photos' probabilities), their caption/transcript MiniLM
    vectors (``text_rows``) and the MiniLM vectors of the words of their file and folder names."""
    from mbm.scenarios.retrieval.concepts import name_words, top_concepts
    from mbm.scenarios.retrieval.encoders import text_vectors

    arrays["concept_ids"][rows], arrays["concept_p"][rows] = top_concepts(probs)
    if len(text_rows):
        arrays["text_vec"][list(text_rows)] = text_vecs
    named = [(j, w) for j, w in zip(rows, (name_words(p) for p in paths)) if w]
    if named:
        arrays["name_vec"][[j for j, _ in named]] = text_vectors([w for _, w in named])
        arrays["name_mask"][[j for j, _ in named]] = True


def parts_dir(out: Path) -> Path:
    """Where a build of ``out`` keeps its finished chunks until ``out`` is written (then it is removed)."""
    out = Path(out)
    return out.with_name(f".{out.name}.parts")


def _chunk_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in CHUNK_ARRAYS:
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _write_chunk(parts: Path, folder: Path, ck: str, items: list[dict], arrays: dict[str, np.ndarray],
                 bad: list[dict], heard: list[float]) -> Path:
    """One finished chunk of a build: its items (with their caption, transcript, notes, skipped
    messages), their arrays and a sha256 of the arrays, written atomically."""
    manifest = {"format": CHUNK_FORMAT, "folder": str(folder), "checkpoint": ck, "items": items, "bad": bad,
                "heard_s": heard, "sha256": _chunk_digest(arrays)}
    buf = io.BytesIO()
    np.savez(buf, **{k: arrays[k] for k in CHUNK_ARRAYS},
             manifest=np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8))
    key = hashlib.sha256(json.dumps([[it["path"], it["stamp"]] for it in items] + bad).encode()).hexdigest()[:20]
    path = parts / f"chunk-{key}.npz"
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path


def _read_chunk(path: Path, folder: Path, ck: str, dims: dict[str, int]) -> tuple[dict, dict[str, np.ndarray]]:
    """A chunk file written by :func:`_write_chunk`, checked whole: a ``ValueError`` saying why it cannot be
    used (truncated, damaged, another folder or checkpoint, arrays that do not match their digest)."""
    from mbm.limits import MAX_MANIFEST_BYTES

    try:
        with zipfile.ZipFile(path) as z:
            shape, dtype = _member_header(z, "manifest")
            if dtype != np.uint8 or len(shape) != 1 or shape[0] > MAX_MANIFEST_BYTES:
                raise ValueError("the manifest is not a byte array of a bounded size")
            man = json.loads(_read_member(z, "manifest").tobytes().decode())
            if not isinstance(man, dict) or man.get("format") != CHUNK_FORMAT:
                raise ValueError(f"not a chunk of format {CHUNK_FORMAT}")
            if man.get("folder") != str(folder) or man.get("checkpoint") != ck:
                raise ValueError("written for another folder or checkpoint")
            items, bad, heard = man.get("items"), man.get("bad"), man.get("heard_s")
            if not isinstance(items, list) or not isinstance(bad, list) or not isinstance(heard, list) \
                    or len(heard) != len(items):
                raise ValueError("its lists of items are malformed")
            for it in items + bad:
                problem = _item_problem(it)
                if problem or not isinstance(it.get("stamp"), list):
                    raise ValueError(f"an item {problem or 'has no file stamp'}")
            m = len(items)
            arrays = {}
            for k in CHUNK_ARRAYS:
                shape, dtype = _member_header(z, k)
                dt = CHUNK_DTYPES.get(k, np.dtype(np.float32))
                want = ((m,), dt) if dt == np.dtype(bool) else ((m, dims[k]), dt)
                if (tuple(shape), dtype) != want:
                    raise ValueError(f"{k} is {shape} {dtype}, not {want[0]} {want[1]}")
                arrays[k] = _read_member(z, k)
    except ValueError:
        raise
    except (OSError, KeyError, EOFError, RecursionError, zipfile.BadZipFile) as e:
        raise ValueError(f"unreadable ({type(e).__name__}: {str(e)[:80]})") from None
    if _chunk_digest(arrays) != man.get("sha256"):
        raise ValueError("its arrays do not match their sha256")
    return man, arrays


def _read_chunks(parts: Path, folder: Path, ck: str, dims: dict[str, int], log) -> dict[str, tuple]:
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
            man, arrays = _read_chunk(f, folder, ck, dims)
        except ValueError as e:
            log(f"note: {f.name} of the interrupted build is not used ({e}); its photos are indexed again")
            f.unlink(missing_ok=True)
            continue
        for r, it in enumerate(man["items"]):
            done[it["path"]] = (it, {k: arrays[k][r] for k in CHUNK_ARRAYS}, float(man["heard_s"][r]))
        for b in man["bad"]:
            done[b["path"]] = (b, None, 0.0)
    return done


def build(folder: Path, out: Path, progress: bool = True, checkpoint: Path | None = None,
          space=None, log=print, audio_budget_s: float | None = None, speech_apart: bool = False,
          chunk: int = CHUNK_PHOTOS, resumable: bool = True) -> Index:
    """Index folder into out (incremental when out exists and was built with the same checkpoint).

    ``audio_budget_s``: at most this many seconds of voice notes are heard (the rest are skipped and
    listed); None: no limit (the command line). ``speech_apart``: voice notes are transcribed in a child
    process (the app: PocketSphinx holds the GIL while it decodes, which would stall every other request).

    ``resumable``: every ``chunk`` photos indexed are written to a chunk file in :func:`parts_dir` (a
    temporary file renamed into place, with a sha256 of its arrays); a build that was interrupted, even
    by ``kill -9``, continues from them on the next run, with the same result as one uninterrupted run
    (the photos are encoded in the same batches). A damaged chunk is reported and its photos indexed
    again. The chunk files are removed once ``out`` is written.
    """
    from mbm.scenarios.retrieval.encoders import photo_features, text_language_note, text_vectors
    from mbm.scenarios.retrieval.model import APP_DIM, SEM_DIM, load_space
    from mbm.scenarios.retrieval.speech import OVER_BUDGET, transcribe_notes

    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise InputError(f"chunk must be a whole number of photos >= 1, not {chunk!r}")
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    photos, other = scan(folder)
    if not photos:
        raise InputError(f"no photos in {folder} (looked for {', '.join(PHOTO_SUFFIXES)}); nothing to index")
    if len(photos) > MAX_ITEMS:
        raise InputError(f"{len(photos)} photos; an index holds at most {MAX_ITEMS}")
    space = space or load_space(checkpoint)
    ck = checkpoint_id(checkpoint)
    old = None
    if Path(out).exists():
        try:
            old = Index.load(out)
        except InputError as e:
            log(f"note: the existing index could not be read ({e}); building from scratch")
        if old is not None and (old.checkpoint != ck or old.root != folder):
            log("note: the existing index was built with another checkpoint or folder; re-indexing everything")
            old = None
    kept = {}
    if old is not None:
        for i, it in enumerate(old.items):
            kept[it["path"]] = i
    n = len(photos)
    # every per-photo array an index (and a chunk) holds, one row per photo: CHUNK_ARRAYS
    arrays = {"photo_sem": np.zeros((n, SEM_DIM), np.float32), "app": np.zeros((n, APP_DIM), np.float32),
              "extra_sem": np.zeros((n, SEM_DIM), np.float32), "extra_mask": np.zeros(n, bool), **open_arrays(n)}
    dims = {k: a.shape[1] for k, a in arrays.items() if a.ndim == 2}
    parts = parts_dir(out) if resumable else None
    done = _read_chunks(parts, folder, ck, dims, log) if parts is not None else {}
    items, todo, why, heard = [], [], {}, np.zeros(n)  # why: row -> its skipped messages
    bad = set()
    resumed = 0
    for j, p in enumerate(photos):
        rel = str(p.relative_to(folder))
        st = p.stat()
        companions = [p.with_suffix(s) for s in (".txt", *VOICE_SUFFIXES)]
        stamp = [st.st_size, st.st_mtime_ns] + [c.stat().st_mtime_ns if c.exists() else 0 for c in companions]
        i = kept.get(rel)
        got = done.get(rel)
        if i is not None and old.items[i].get("stamp") == stamp:
            items.append(old.items[i])
            for k in CHUNK_ARRAYS:
                arrays[k][j] = getattr(old, k)[i]
        elif got is not None and got[0]["stamp"] == stamp:  # finished by an interrupted build
            resumed += 1
            entry, row, heard[j] = got
            if row is None:
                items.append({"path": rel, "stamp": stamp})
                bad.add(j)
            else:
                items.append({k: v for k, v in entry.items() if k != "skipped"})
                for k in CHUNK_ARRAYS:
                    arrays[k][j] = row[k]
            if entry.get("skipped"):
                why[j] = list(entry["skipped"])
        else:
            items.append({"path": rel, "stamp": stamp})
            todo.append(j)
    log(f"{len(photos)} photos: {len(photos) - len(todo) - resumed} unchanged, "
        + (f"{resumed} already indexed by an interrupted build, " if resumed else "")
        + f"{len(todo)} to index" + (f"; {len(other)} other files ignored" if other else ""))
    # captions first: their words are the speech recogniser's vocabulary for the voice notes
    for j in todo:
        p = folder / items[j]["path"]
        items[j].update(caption="", transcript="", notes=[])
        if p.with_suffix(".txt").exists():
            try:
                cap, notes = read_caption(p.with_suffix(".txt"))
                items[j]["caption"] = cap
                items[j]["notes"] += notes
                lang = text_language_note(cap) if cap else None
                if lang:
                    items[j]["notes"].append("caption: " + lang)
            except OSError as e:
                why.setdefault(j, []).append(f"{items[j]['path']}: caption unreadable ({e.strerror})")
    vocab = tuple(sorted({c for it in items for c in [it.get("caption", "")] if c and len(c) < 80}
                         | {Path(it["path"]).stem.replace("_", " ") for it in items}))
    batch_size = math.gcd(chunk, BATCH_PHOTOS)  # batches never straddle chunks: a resumed build encodes alike
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="indexing" + (f" (resumed, {resumed} done before)" if resumed else ""),
                   unit="photo", smoothing=0.05, dynamic_ncols=True)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=2)  # decoding and resizing (PIL) release the GIL
    if parts is not None and todo:
        parts.mkdir(parents=True, exist_ok=True)
    heard_s = float(heard.sum())
    try:
        for c in range(0, len(todo), chunk):
            rows = todo[c:c + chunk]
            for s in range(0, len(rows), batch_size):
                batch = rows[s:s + batch_size]
                pix, ok, voice = [], [], []
                for j, got in zip(batch, pool.map(_load_or_error, [folder / items[j]["path"] for j in batch])):
                    p = folder / items[j]["path"]
                    if isinstance(got, np.ndarray):
                        pix.append(got); ok.append(j)
                    else:  # skipped and listed
                        why.setdefault(j, []).append(f"{items[j]['path']}: {got}")
                        bad.add(j)
                    vp = next((p.with_suffix(v) for v in VOICE_SUFFIXES if p.with_suffix(v).exists()), None)
                    if vp is not None and j not in bad:
                        voice.append((j, vp))
                left = None if audio_budget_s is None else audio_budget_s - heard_s
                for (j, vp), got in zip(voice, transcribe_notes([str(vp) for _, vp in voice], vocab, left,
                                                                apart=speech_apart)):
                    if isinstance(got, str):  # skipped and listed: over the budget, or unreadable
                        why.setdefault(j, []).append(
                            f"{items[j]['path']}: voice note {vp.name} "
                            + (f"not heard (the {audio_budget_s:g} s of voice notes one collection may use were "
                               "spent)" if got == OVER_BUDGET else f"unreadable ({got})"))
                        continue
                    text, notes, seconds = got
                    heard_s += seconds
                    heard[j] = seconds
                    items[j]["transcript"] = text
                    items[j]["notes"] += [f"voice note: {n}" for n in notes]
                    if not text:
                        items[j]["notes"].append("voice note: no words made out")
                if pix:
                    pooled, probs = photo_features(pix)
                    arrays["photo_sem"][ok] = space.photo_sem(pooled, probs)
                    arrays["app"][ok] = space.appearance(pooled)
                    texts = [(j, " . ".join(t for t in (items[j]["caption"], items[j]["transcript"]) if t))
                             for j in ok]
                    texts = [(j, t) for j, t in texts if t]
                    tv = text_vectors([t for _, t in texts]) if texts else None
                    if texts:
                        arrays["extra_sem"][[j for j, _ in texts]] = space.text_sem(tv)
                        arrays["extra_mask"][[j for j, _ in texts]] = True
                    add_open_vocabulary(arrays, ok, probs, [items[j]["path"] for j in ok], [j for j, _ in texts], tv)
                if bar is not None:
                    bar.update(len(batch))
            if parts is not None:
                good = [j for j in rows if j not in bad]
                _write_chunk(parts, folder, ck, [{**items[j], "skipped": why.get(j, [])} for j in good],
                             {k: arrays[k][good] for k in CHUNK_ARRAYS},
                             [{"path": items[j]["path"], "stamp": items[j]["stamp"], "skipped": why.get(j, [])}
                              for j in rows if j in bad], [float(heard[j]) for j in good])
    finally:
        pool.shutdown()
        if bar is not None:
            bar.close()
    skipped = [m for j in range(n) for m in why.get(j, [])]
    keep = np.array([j not in bad for j in range(n)], bool)
    items = [it for j, it in enumerate(items) if keep[j]]
    if not items:
        if parts is not None:
            shutil.rmtree(parts, ignore_errors=True)
        raise InputError(f"none of the {len(photos)} photos in {folder} could be read: "
                         + "; ".join(skipped[:5]))
    kept_rows = {k: arrays[k][keep] for k in CHUNK_ARRAYS}
    idx = Index(space.item_vectors(*(kept_rows[k] for k in ("photo_sem", "app", "extra_sem", "extra_mask"))),
                items=items, root=folder, checkpoint=ck, skipped=skipped, **kept_rows)
    idx.save(out)
    if parts is not None:
        shutil.rmtree(parts, ignore_errors=True)
    return idx


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mbm.scenarios.retrieval.index", description="Build a retrieval index of a folder.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="index FOLDER's photos (+ same-name .txt captions, .wav/.mp3 voice notes)")
    b.add_argument("folder", type=Path)
    b.add_argument("--out", type=Path, required=True, help="the index file (.npz); re-running adds new files only")
    b.add_argument("--checkpoint", type=Path, default=None)
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--chunk", type=int, default=CHUNK_PHOTOS,
                   help=f"photos per resumable chunk file (default {CHUNK_PHOTOS}); an interrupted build "
                        "(Ctrl-C, kill -9, power cut) continues from its finished chunks when run again")
    i = sub.add_parser("info", help="what an index holds")
    i.add_argument("index", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            t = time.time()
            try:
                idx = build(args.folder, args.out, progress=not args.quiet, checkpoint=args.checkpoint,
                            chunk=args.chunk)
            except KeyboardInterrupt:
                print(f"\ninterrupted: the finished chunks are kept in {parts_dir(args.out)}; run the same "
                      "command again to continue", file=sys.stderr)
                return 130
            print(f"wrote {args.out}: {len(idx)} items in {time.time() - t:.1f} s")
        else:
            idx = Index.load(args.index)
            print(f"{args.index}: {len(idx)} items from {idx.root}; "
                  f"{int(idx.extra_mask.sum())} with a caption or voice note")
        if idx.skipped:
            print(f"skipped {len(idx.skipped)}:", file=sys.stderr)
            for s in idx.skipped:
                print(f"  {s}", file=sys.stderr)
        return 0
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
