"""A searchable collection's index: the :class:`Index` in memory, its file format, and the command
``python -m mbm.scenarios.retrieval.index build FOLDER --out INDEX`` (or ``info INDEX``).

FOLDER holds photos, each with an optional same-name ``.txt`` caption and/or ``.wav``/``.mp3`` voice
note (``lamp1.jpg``, ``lamp1.txt``, ``lamp1.wav``); :mod:`mbm.scenarios.retrieval.index_build` indexes it
(incrementally, resumably: :mod:`mbm.scenarios.retrieval.index_chunks`).

The index is ONE ``.npz`` file (read with ``allow_pickle=False``: plain arrays only) that also holds
its JSON manifest as a uint8 array; it is written to a temporary file, fsynced and renamed over the
old one, so an interrupted build never loses the existing index. Reading one checks it first
(:mod:`mbm.scenarios.retrieval.index_checks`).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
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
MAX_ITEMS = 1_000_000
ARRAYS = ("vectors", "photo_sem", "app", "extra_sem", "extra_mask", "concept_ids", "concept_p", "text_vec", "name_vec",
          "name_mask")  # every array an index file holds
OPEN_ARRAYS = ("concept_ids", "concept_p", "text_vec", "name_vec", "name_mask")  # the open vocabulary


def checkpoint_id(path: Path | None = None) -> str:
    """A short hash of the checkpoint an index was built with (an index of another one is rebuilt)."""
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
        """Item i's file."""
        return self.root / self.items[i]["path"]

    # --- file format ----------------------------------------------------------------------------
    def save(self, out: Path) -> None:
        """Write the index to ``out``, whole or not at all (the old file stays until the new one is complete)."""
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
        from mbm.scenarios.retrieval.index_checks import check_arrays, check_open_vocabulary, read_manifest, read_member

        path = Path(path)
        if not path.is_file():
            raise InputError(f"no index at {path}; build one with `python -m mbm.scenarios.retrieval.index build FOLDER --out {path}`")
        try:
            with zipfile.ZipFile(path) as z:
                manifest = read_manifest(z, path)
                n = len(manifest["items"])
                check_arrays(z, n, path)
                arrays = {k: read_member(z, k) for k in ARRAYS}
                check_open_vocabulary(arrays, path)
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
        """An index of no items over ``root``."""
        from mbm.scenarios.retrieval.model import APP_DIM, SEM_DIM, VECTOR_DIM

        z = lambda d: np.zeros((0, d), np.float32)
        return cls(z(VECTOR_DIM), z(SEM_DIM), z(APP_DIM), z(SEM_DIM), np.zeros(0, bool), [], Path(root))


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



def main(argv: list[str] | None = None) -> int:
    from mbm.scenarios.retrieval.index_build import build
    from mbm.scenarios.retrieval.index_chunks import CHUNK_PHOTOS, parts_dir

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
