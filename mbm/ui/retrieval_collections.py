"""Visitors' own collections in the Search tab: uploaded photos (with same-name .txt captions and .wav/.mp3
voice notes) checked, copied and indexed on the server, within a disk budget in all and per visitor, one
collection indexed at a time in a queue of its own."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import gradio as gr

from mbm.errors import InputError
from mbm.limits import COLLECTION_CONCURRENCY, MAX_COLLECTIONS_BYTES, MAX_VISITOR_COLLECTIONS_BYTES
from mbm.ui.params import file_value

UPLOADS = Path(tempfile.gettempdir()) / "mbm_search_collections"
MAX_UPLOAD_FILES = 300


class Collections:
    """Visitors' uploaded collections on disk: what is kept, for whom, and what it weighs.

    A collection is the photos (and their same-name .txt / .wav / .mp3) of one upload, copied into
    ``folder/<key>/`` (key: a hash of the names and contents; once indexed, only the photos are kept,
    for the results), and its index, ``folder/<key>.npz``, outside the collection's own folder (a file
    named ``.index.npz`` in an upload is skipped like any other dot-file). Everything together stays
    within ``total_bytes`` and each visitor's (browser session's) collections within ``visitor_bytes``:
    the least recently used are removed first. At most ``limits.COLLECTION_CONCURRENCY`` collections are
    indexed at once.
    """

    def __init__(self, folder: Path, total_bytes: int, visitor_bytes: int, concurrency: int = 1):
        self.folder = Path(folder)
        self.total_bytes, self.visitor_bytes = total_bytes, visitor_bytes
        self.lock = threading.Lock()
        self.indexing = threading.BoundedSemaphore(concurrency)
        self.entries: OrderedDict[str, dict] = OrderedDict()  # key -> bytes, visitors, index, busy; LRU first
        self.failed: OrderedDict[str, str] = OrderedDict()  # key -> why its indexing failed (the last 64)

    def clear(self) -> None:
        """Remove every collection (at start: what an earlier run left is not in this registry)."""
        with self.lock:
            self.entries.clear()
            shutil.rmtree(self.folder, ignore_errors=True)

    def used(self, visitor: str | None = None) -> int:
        """Bytes kept, in all or for one visitor."""
        return sum(e["bytes"] for e in self.entries.values() if visitor is None or visitor in e["visitors"])

    def _remove(self, key: str) -> None:
        self.entries.pop(key, None)
        shutil.rmtree(self.folder / key, ignore_errors=True)
        (self.folder / f"{key}.npz").unlink(missing_ok=True)

    def _make_room(self, visitor: str, size: int) -> None:
        """Remove the least recently used collections until ``size`` more bytes fit (the caller holds lock)."""
        from mbm.limits import size_text

        for key in list(self.entries):
            e = self.entries[key]
            if self.used(visitor) + size <= self.visitor_bytes:
                break
            if visitor in e["visitors"] and not e["busy"]:
                e["visitors"].discard(visitor)
                if not e["visitors"]:
                    self._remove(key)
        for key in list(self.entries):
            if self.used() + size <= self.total_bytes:
                break
            if not self.entries[key]["busy"]:
                self._remove(key)
        if self.used() + size > self.total_bytes:
            raise InputError(f"the server's space for uploaded collections ({size_text(self.total_bytes)}) is "
                             "in use by collections being indexed; try again in a minute")

    def index(self, files: list[Path], visitor: str, wait: bool):
        """The index of an upload (built if new), and the uploaded files that were skipped, with why.

        ``wait``: wait for a turn to index (the Search button's own queue step); otherwise (a search
        request, holding one of the slots every request shares) another collection being indexed is
        a message to try again, not a wait.
        """
        from mbm.limits import size_text

        taken, skipped = take(files)
        size = sum(p.stat().st_size for p, _ in taken)
        if size > min(self.visitor_bytes, self.total_bytes):
            raise InputError(f"the collection's photos and notes come to {size_text(size)}; a visitor's "
                             f"collections may hold {size_text(min(self.visitor_bytes, self.total_bytes))} "
                             "(MBM_VISITOR_COLLECTIONS_MB); upload fewer or smaller photos")
        key = content_key(taken)
        found = self._found(key, visitor)
        if found is not None:
            return found, skipped
        if key in self.failed:
            raise InputError(self.failed[key])
        turn = self.indexing.acquire(timeout=INDEX_WAIT_S) if wait else self.indexing.acquire(blocking=False)
        if not turn:
            raise InputError("another visitor's collection is being indexed right now (one at a time, so "
                             "searches are not held up); try again in a minute")
        try:
            found = self._found(key, visitor)  # indexed meanwhile
            if found is not None:
                return found, skipped
            with self.lock:
                if key in self.entries:  # the same files, being indexed by another request
                    raise InputError("this collection is being indexed for another request; try again in a moment")
                self._make_room(visitor, size)
                self.entries[key] = {"bytes": size, "visitors": {visitor}, "index": None, "busy": True}
            try:
                index = self._build(key, taken)
            except Exception as e:
                with self.lock:
                    self._remove(key)
                if isinstance(e, ValueError):
                    self.failed[key] = str(e)
                    while len(self.failed) > 64:
                        self.failed.popitem(last=False)
                raise
            with self.lock:
                e = self.entries.get(key)
                if e is not None:
                    e.update(index=index, bytes=_du(self.folder / key) + _du(self.folder / f"{key}.npz"))
                    self.entries.move_to_end(key)
                    try:
                        self._make_room(visitor, 0)  # the index file counts too: others make room for it
                    finally:
                        e["busy"] = False
            return index, skipped
        finally:
            self.indexing.release()

    def _found(self, key: str, visitor: str):
        with self.lock:
            e = self.entries.get(key)
            if e is None or e["index"] is None:
                return None
            self.entries.move_to_end(key)
            if visitor not in e["visitors"]:
                e["visitors"].add(visitor)
                e["busy"] = True  # not pruned to make room for itself
                try:
                    self._make_room(visitor, 0)
                finally:
                    e["busy"] = False
            return e["index"]

    def _build(self, key: str, taken: list[tuple[Path, str]]):
        from mbm.limits import MAX_COLLECTION_AUDIO_SECONDS
        from mbm.scenarios.retrieval.index_build import build
        from mbm.ui.retrieval import space

        folder = self.folder / key
        tmp = self.folder / f".{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            for p, name in taken:
                shutil.copyfile(p, tmp / name)
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        index = build(folder, self.folder / f"{key}.npz", progress=False, space=space(), log=lambda *_: None,
                      audio_budget_s=MAX_COLLECTION_AUDIO_SECONDS, speech_apart=True,
                      resumable=False)  # a visitor's request is not resumed: no chunk files left behind
        for p in folder.iterdir():  # captions and transcripts are in the index now: only the photos are kept
            if p.suffix in (".txt", ".wav", ".mp3"):
                p.unlink(missing_ok=True)
        return index


def _du(path: Path) -> int:
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    except OSError:
        return 0


def take(files: list[Path]) -> tuple[list[tuple[Path, str]], list[str]]:
    """The files of an upload that make a collection: ``(file, name)`` of the photos and their same-name
    .txt / .wav / .mp3; and the rest, skipped, each with why (dot-files, other types, strays)."""
    from mbm.limits import MAX_COLLECTION_PHOTOS
    from mbm.scenarios.retrieval.folder import PHOTO_SUFFIXES, VOICE_SUFFIXES

    photos, companions, skipped, seen = [], [], [], set()
    for p in files:
        name = Path(p).name  # Gradio keeps the uploaded file's own name (a leading dot included)
        if name.startswith("."):
            skipped.append(f"{name}: a hidden file (its name starts with a dot)")
        elif name in seen:
            skipped.append(f"{name}: another uploaded file has the same name")
        elif Path(name).suffix.lower() in PHOTO_SUFFIXES:
            photos.append((Path(p), name))
        elif Path(name).suffix in (".txt", *VOICE_SUFFIXES):
            companions.append((Path(p), name))
        else:
            skipped.append(f"{name}: not a photo, a .txt caption or a .wav/.mp3 voice note")
        seen.add(name)
    if not photos:
        raise InputError("no photos among the collection's files (photos: "
                         f"{', '.join(s.lstrip('.') for s in PHOTO_SUFFIXES)})"
                         + (f"; skipped: {'; '.join(skipped[:3])}" if skipped else ""))
    if len(photos) > MAX_COLLECTION_PHOTOS:
        raise InputError(f"a collection uploaded here may hold {MAX_COLLECTION_PHOTOS} photos (got {len(photos)}); "
                         "for a larger one use `python -m mbm.scenarios.retrieval.index build FOLDER --out INDEX`")
    stems = {Path(name).stem for _, name in photos}
    taken = list(photos)
    for p, name in companions:
        if Path(name).stem in stems:
            taken.append((p, name))
        else:
            skipped.append(f"{name}: no photo of the same name")
    return taken, skipped


def content_key(taken: list[tuple[Path, str]]) -> str:
    """A hash of an upload's names and contents: the same files, the same collection."""
    h = hashlib.sha256()
    for p, name in sorted(taken, key=lambda t: t[1]):
        with open(p, "rb") as f:
            h.update(name.encode() + b"\0" + hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()[:24]


COLLECTIONS = Collections(UPLOADS, MAX_COLLECTIONS_BYTES, MAX_VISITOR_COLLECTIONS_BYTES, COLLECTION_CONCURRENCY)
INDEX_WAIT_S = 300.0  # the Search button's indexing step waits this long at most for its turn


def clear_collections() -> None:
    """At start: remove the uploaded collections an earlier run left."""
    COLLECTIONS.clear()


def collection_files(collection) -> list[Path]:
    """The collection argument (FileData dicts, paths) as uploaded files, each checked; a message naming it."""
    if not collection:
        return []
    files = collection if isinstance(collection, list) else [collection]
    if len(files) > MAX_UPLOAD_FILES:
        raise InputError(f"upload at most {MAX_UPLOAD_FILES} files to search (got {len(files)}); for a "
                         "larger collection use `python -m mbm.scenarios.retrieval.index build FOLDER --out INDEX`")
    out = []
    for i, f in enumerate(files):
        p = file_value(f, f"collection[{i}]")
        if isinstance(p, bytes):
            raise InputError(f"collection[{i}]: collection files must be uploads with file names (a data URL has none)")
        if p is not None:
            out.append(Path(p))
    return out


def uploaded_index(files: list, visitor: str = "local", wait: bool = False):
    """Index uploaded files (photos + same-name .txt / .wav / .mp3); (index, skipped files with why)."""
    return COLLECTIONS.index([Path(f) for f in files], visitor, wait)


def visitor_of(request) -> str:
    """The visitor a request comes from (its browser session), whose collections are counted together."""
    return getattr(request, "session_hash", None) or "local"


def index_collection(collection=None, request: gr.Request = None):
    """The Search button's first step, in its own queue (one collection indexed at a time): index the
    uploaded collection so that the search itself, in the shared slots, finds it ready. Errors are left
    to the search step, which says them."""
    try:
        files = collection_files(collection)
        if files:
            index, skipped = uploaded_index(files, visitor_of(request), wait=True)
            return f"Your collection: {len(index)} items" + (f"; {len(skipped)} files skipped" if skipped else "")
    except Exception as e:  # noqa: BLE001 - the search step gives the message
        logging.getLogger("mbm.app").debug("collection not indexed: %s", e)
    return gr.skip()
