"""The Search tab: find items of a collection by a spoken clip, a photo and/or typed text.

score = sum_m w_m * sim(q_m, item) - w_neg * sim(negative text, item); each result shows every input's
share of its score. The collection is the shipped demo (assets/retrieval), an index named by $MBM_SEARCH_INDEX (built
with ``python -m mbm.scenarios.retrieval.index build FOLDER --out INDEX.npz``), or photos uploaded here (with optional
same-name .txt captions and .wav/.mp3 voice notes), indexed on the spot.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import gradio as gr

from mbm.errors import InputError
from mbm.limits import (
    COLLECTION_CONCURRENCY,
    COLLECTION_CONCURRENCY_ID,
    HEAVY_CONCURRENCY_ID,
    MAX_COLLECTIONS_BYTES,
    MAX_VISITOR_COLLECTIONS_BYTES,
)
from mbm.paths import ASSETS, RETRIEVAL_ASSETS, RETRIEVAL_DEMO_INDEX, ROOT
from mbm.ui import models
from mbm.ui.common import NEWEST, REQUEST_ID_JS, answer_html, echo_markdown, example_cards, plain, show_answer
from mbm.ui.params import file_value, guarded, number_value, text_value

UPLOADS = Path(tempfile.gettempdir()) / "mbm_search_collections"
MAX_UPLOAD_FILES = 300
MAX_K = 24
MAX_WEIGHT = 5.0
LABELS = {"speech": "spoken", "photo": "photo", "text": "text", "negative": "not"}


def space():
    """The search space of the registry's predictor (``mbm.ui.models``: loaded once)."""
    return models.predictor("retrieval").space


# The demo collections (a second one of everyday things): name -> (label, index file)
DEMO_COLLECTIONS = {"devices": ("Household devices", RETRIEVAL_DEMO_INDEX),
                    "everyday": ("Everyday things (Caltech-101)", ASSETS / "retrieval_everyday" / "index.npz")}


@lru_cache(maxsize=4)
def demo_index(name: str = "devices"):
    """A demo collection: "devices" ($MBM_SEARCH_INDEX, an index built with `python -m mbm.scenarios.retrieval.index build`, or the
    shipped device demo) or "everyday" (Caltech-101 photos of everyday things)."""
    from mbm.scenarios.retrieval.index import Index

    if name not in DEMO_COLLECTIONS:
        raise InputError(f"no demo collection {name!r}; choose one of {', '.join(DEMO_COLLECTIONS)}")
    path = DEMO_COLLECTIONS[name][1]
    if name == "devices" and os.environ.get("MBM_SEARCH_INDEX"):
        path = Path(os.environ["MBM_SEARCH_INDEX"])
    return Index.load(path)


def shown(path: Path):
    """A result's picture for the gallery: the file itself where Gradio may serve it (the repository,
    the temp folder), else a small copy (an index of any folder on this machine)."""
    p = path.resolve()
    if any(p.is_relative_to(r) for r in (ROOT.resolve(), Path(tempfile.gettempdir()).resolve())):
        return str(p)
    from mbm.config import ImageConfig
    from mbm.preprocess import read_image

    img = read_image(p, ImageConfig(size=256))
    img.thumbnail((320, 320))
    return img


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
        from mbm.scenarios.retrieval.index import build

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
    from mbm.scenarios.retrieval.index import PHOTO_SUFFIXES, VOICE_SUFFIXES

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


def _share_line(terms: dict[str, float], score: float) -> str:
    parts = [f"{LABELS.get(m, m)} {t:+.2f}" for m, t in terms.items()]
    return f"{score:.2f} = " + " ".join(parts)


@guarded("Nothing to search with")
def search_collection(speech=None, photo=None, text=None, negative=None, w_speech=None, w_photo=None,
                      w_text=None, w_negative=None, k=8, collection=None, collection_name=None,
                      request: gr.Request = None):
    """Search a collection with any mix of a spoken clip, a photo and typed text.

    Args: speech (audio file), photo (image file), text, negative (text to push away), a weight per
    input (0..5; None = the learned default), k (1..24 results), collection (files to search
    instead of the demo: photos + same-name .txt / .wav / .mp3), collection_name (the demo collection:
    "devices", the default, or "everyday").
    Returns the gallery [(image, caption)], a status line, and JSON: {"results": [{"item" (the path in the
    collection; not "path", which Gradio's client would take for a file to download), "score",
    "shares": {input: w * sim}, "why" (the concepts, caption words or names that matched), "caption",
    "transcript", "folded"}], "heard", "weights", "notes", "warnings", "readings": {"speech"/"text": {"read_as":
    [[caption, weight]], "concepts": [[ImageNet concept, share]], "off_topic": the nearest known thing when the
    text is far from everything the search knows, else null, "nearest_cos"}}}.
    """
    predictor = models.predictor("retrieval")
    d = predictor.weights
    weights = {"speech": d["speech"] if w_speech is None else number_value(w_speech, "w_speech", 0, MAX_WEIGHT),
               "photo": d["photo"] if w_photo is None else number_value(w_photo, "w_photo", 0, MAX_WEIGHT),
               "text": d["text"] if w_text is None else number_value(w_text, "w_text", 0, MAX_WEIGHT),
               "negative": (d["negative"] if w_negative is None
                            else number_value(w_negative, "w_negative", 0, MAX_WEIGHT))}
    k = int(number_value(8 if k is None else k, "k", 1, MAX_K))
    files, skipped = collection_files(collection), []
    if files:  # indexed by the Search button's first step; an API call indexes it here (or is told to wait)
        index, skipped = uploaded_index(files, visitor_of(request), wait=False)
    else:
        index = demo_index(text_value(collection_name, "collection_name", 40) or "devices")
    answer = predictor.predict(index, speech=file_value(speech, "speech"), photo=file_value(photo, "photo"),
                               text=text_value(text, "text", 500), negative=text_value(negative, "negative", 500),
                               weights=weights, k=k, speech_apart=True)
    query, results = answer.query, answer.results
    gallery, rows = [], []
    for r in results:
        it = index.items[r.index]
        cap = _share_line(r.terms, r.score)
        if r.folded:
            cap += f" (+{r.folded} near-duplicate{'s' * (r.folded > 1)})"
        if r.why:
            cap += " · " + "; ".join(r.why[:2])
        if it.get("caption"):
            cap += f" — {it['caption'][:80]}"
        gallery.append((shown(index.path_of(r.index)), cap))
        rows.append({"item": it["path"], "score": round(r.score, 4),
                     "shares": {m: round(t, 4) for m, t in r.terms.items()}, "why": list(r.why),
                     "caption": it.get("caption", ""), "transcript": it.get("transcript", ""), "folded": r.folded})
    used = [m for m in ("speech", "photo", "text") if m in query.vectors]
    status = [f"**{len(results)} results** from {len(index)} items; score = "
              + " + ".join(f"{weights[m]:g} × sim({LABELS[m]})" for m in used)
              + (f" − {weights['negative']:g} × sim(not)" if query.negative is not None else "")]
    status += [plain(n) for n in query.notes]  # the notes and warnings quote what was typed or heard
    status += ["⚠️ " + plain(w) for w in query.warnings]
    if rows:  # the shares in full (the gallery's captions are cut to fit)
        cols = [m for m in ("speech", "photo", "text", "negative") if m in rows[0]["shares"]]
        status.append("\n| # | item | score | " + " | ".join(LABELS[m] for m in cols) + " | why |\n|---|---|---|"
                      + "---|" * len(cols) + "---|\n" + "\n".join(
                          f"| {i + 1} | {plain(r['item'])}"
                          + (f" (+{r['folded']})" if r["folded"] else "") + f" | {r['score']:.2f} | "
                          + " | ".join(f"{r['shares'][m]:+.2f}" for m in cols) + " | "
                          + plain("; ".join(r["why"])).replace("|", "/") + " |" for i, r in enumerate(rows)))
    skipped = skipped + index.skipped
    if skipped:
        status.append(f"{len(skipped)} files of the collection were skipped: " + plain("; ".join(skipped[:5]))
                      + (f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""))
    readings = {m: {"read_as": [list(x) for x in r.read_as], "concepts": [list(x) for x in r.concepts],
                    "off_topic": r.off_topic, "nearest_cos": r.nearest_cos}
                for m, r in query.readings.items()}
    return gallery, "  \n".join(status), {"results": rows, "heard": query.heard, "weights": weights,
                                          "notes": query.notes, "warnings": query.warnings, "readings": readings,
                                          "skipped": skipped}


# The examples: [spoken, photo, typed, demo collection] and a caption. The first: fusion finds what neither input
# alone ranks first (the painted door; docs/retrieval.md). The everyday ones: a description that names
# no folder of that collection, and a spoken name no device caption holds.
EVERYDAY_QUERIES = ASSETS / "retrieval_everyday" / "queries"
EXAMPLES = [([None, str(RETRIEVAL_ASSETS / "queries" / "monitor.jpg"), "a door", "devices"],
             'colourful monitor photo + "a door"'),
            ([None, None, "a screen for movies", "devices"], 'typed "a screen for movies"'),
            ([str(RETRIEVAL_ASSETS / "queries" / "fan_spoken.wav"), None, None, "devices"], 'spoken "fan"'),
            ([None, None, "a musical instrument with a keyboard and bellows", "everyday"],
             'everyday things: typed "a musical instrument with a keyboard and bellows"'),
            ([str(EVERYDAY_QUERIES / "starfish_spoken.wav"), None, None, "everyday"],
             'everyday things: spoken "a starfish"')]
NO_ANSWER_YET = answer_html("none", "No results yet", "Click an example, or give a query and press Search.")
SEARCHING = answer_html("none", "Searching…")
FAILED = answer_html("none", "No results", "The search could not run; the message says why.")


def search_answer(result) -> str:
    """The answer box from the search's JSON: the best match and how many results ("sure" when every
    input was read as on the collection's subject), "Not sure" with the first warning (an off-topic text,
    nothing heard), or no results."""
    result = result if isinstance(result, dict) else {}
    rows = result.get("results") or []
    if not rows:
        return answer_html("none", "No results", "; ".join(str(w) for w in result.get("warnings") or [])
                           or "Nothing in the collection matches; try other words or another photo.")
    best = rows[0]
    name = str(best.get("item", "?")).rsplit("/", 1)[-1]
    counted = f"{len(rows)} results, best first; best score {float(best.get('score', 0)):.2f}"
    warnings = [str(w) for w in result.get("warnings") or []]
    if warnings:
        return answer_html("unsure", f"Not sure · best match {name}", f"{warnings[0]} ({counted}).")
    return answer_html("sure", f"Best match: {name}", counted)


@guarded("Nothing to search with")
def search_view(speech=None, photo=None, text=None, negative=None, w_speech=None, w_photo=None, w_text=None,
                w_negative=None, k=8, collection=None, collection_name=None, request_id=None,
                request: gr.Request = None):
    """The page's search: ``search_collection``'s outputs and the answer box; nothing (every output
    skipped) when the page has sent a newer search meanwhile (``request_id``, common.Newest)."""
    if not NEWEST.start("search", request, request_id):
        return tuple(gr.skip() for _ in range(4))
    gallery, status, result = search_collection(speech, photo, text, negative, w_speech, w_photo, w_text,
                                                w_negative, k, collection, collection_name, request)
    if NEWEST.superseded("search", request, request_id):
        return tuple(gr.skip() for _ in range(4))
    return gallery, status, result, search_answer(result)


def search_tab() -> None:
    sp_weights = None
    try:
        sp_weights = space().weights
    except Exception:  # noqa: BLE001 - the tab still builds; a search then says what is missing
        sp_weights = {"speech": 1.0, "photo": 1.0, "text": 1.0, "negative": 0.5}
    gr.Markdown("Search the collection with **any mix** of a spoken clip, a photo and typed text; a slider "
                "per input sets how much it counts (defaults learned). Each result shows each input's "
                "exact share of its score; near-duplicates are folded.", elem_id="search-help")
    examples_row = gr.Row()  # the examples come first (filled below, once the event exists)
    with gr.Row(equal_height=False):
        with gr.Column():
            speech = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Spoken query",
                              elem_id="search-audio")
            photo = gr.Image(sources=["upload", "webcam"], type="filepath", label="Photo query", height=220,
                             elem_id="search-photo")
            text = gr.Textbox(label="Typed query", placeholder="e.g. a screen for movies, or a pouched animal that hops",
                              max_lines=1, elem_id="search-text")
            negative = gr.Textbox(label="Not this (optional)", placeholder="e.g. blinds", max_lines=1,
                                  elem_id="search-negative")
            with gr.Accordion("How much each input counts", open=False):
                w_speech = gr.Slider(0, MAX_WEIGHT, sp_weights["speech"], step=0.05, label="spoken",
                                     elem_id="search-w-speech")
                w_photo = gr.Slider(0, MAX_WEIGHT, sp_weights["photo"], step=0.05, label="photo",
                                    elem_id="search-w-photo")
                w_text = gr.Slider(0, MAX_WEIGHT, sp_weights["text"], step=0.05, label="text",
                                   elem_id="search-w-text")
                w_negative = gr.Slider(0, MAX_WEIGHT, sp_weights["negative"], step=0.05, label="not",
                                       elem_id="search-w-negative")
                k = gr.Slider(1, MAX_K, 8, step=1, label="results", elem_id="search-k")
            with gr.Accordion("Your own collection (optional)", open=False):
                gr.Markdown("<small>Upload photos, with optional same-name .txt captions and .wav/.mp3 "
                            "voice notes; they are searched instead of the demo. For a folder use "
                            "`python -m mbm.scenarios.retrieval.index build FOLDER --out INDEX`.</small>")
                collection = gr.File(file_count="multiple", label="Collection files", elem_id="search-collection")
            which = gr.Radio([(label, name) for name, (label, _) in DEMO_COLLECTIONS.items()], value="devices",
                             label="Demo collection", elem_id="search-which")
            run = gr.Button("Search", variant="primary", elem_id="search-run")
        with gr.Column():
            headline = gr.HTML(NO_ANSWER_YET, elem_id="search-headline")  # the answer at a glance
            # the results right under the answer (on a phone the shares' table below them was a screen long)
            gallery = gr.Gallery(label="Results (score = each input's share)", columns=4, height="auto",
                                 elem_id="search-gallery")
            status = echo_markdown(elem_id="search-status")
            with gr.Accordion("Full result (what the API returns)", open=False):
                details = gr.JSON(show_label=False, elem_id="search-json")
    inputs = [speech, photo, text, negative, w_speech, w_photo, w_text, w_negative, k, collection, which]
    event = {"fn": search_collection, "inputs": inputs, "outputs": [gallery, status, details], "preprocess": False,
             "concurrency_id": HEAVY_CONCURRENCY_ID}
    # An uploaded collection is indexed first, in its own queue (COLLECTION_CONCURRENCY at once), so that
    # visitors indexing never hold the shared slots every other request needs; the search then finds it ready.
    first = {"fn": index_collection, "inputs": [collection], "outputs": [status], "preprocess": False,
             "concurrency_id": COLLECTION_CONCURRENCY_ID, "concurrency_limit": COLLECTION_CONCURRENCY,
             "api_visibility": "private"}
    pending = {"fn": None, "inputs": None, "outputs": headline, "js": f"() => {json.dumps(SEARCHING)}",
               "api_visibility": "private", "queue": False}
    # The page's searches are numbered (REQUEST_ID_JS) and run at once ("multiple"): an older one still
    # running paints nothing (common.Newest). The API's /search is the same search without the answer box.
    request_id = gr.Number(visible=False, elem_id="search-request-id")
    page = dict(event, fn=search_view, inputs=inputs + [request_id], outputs=[gallery, status, details, headline],
                js=REQUEST_ID_JS, trigger_mode="multiple", api_visibility="private")

    def chain(start):
        """One search from the page: "Searching…", the collection indexed, the search, then into view."""
        start(**pending)
        search = start(**dict(first, trigger_mode="multiple")).then(**page)
        search.success(**show_answer("#search-headline"))
        search.failure(**dict(pending, js=f"() => {json.dumps(FAILED)}"))  # the message says why

    chain(run.click)
    chain(text.submit)
    with gr.Row(visible=False):
        api_search = gr.Button("search", elem_id="search-api")
    api_search.click(**first).then(**event, api_name="search")
    examples, captions = [row for row, _ in EXAMPLES], [caption for _, caption in EXAMPLES]
    kept = [i for i, e in enumerate(examples)
            if all(x is None or not x.startswith("/") or Path(x).is_file() for x in e)]
    if kept:
        with examples_row:  # the collection first in a card's row: the cards read the typed text from the last
            load_example = example_cards([[examples[i][3], *examples[i][:3]] for i in kept],
                                         [captions[i] for i in kept], [which, speech, photo, text], photo=2,
                                         label="Examples: click one to search", elem_id="search-examples")
        chain(load_example.then)
