"""The Search tab (issue 20): find items of a collection by a spoken clip, a photo and/or typed text.

score = sum_m w_m * sim(q_m, item) - w_neg * sim(negative text, item); each result shows every input's
share of its score. The collection is the shipped demo (assets/retrieval), an index named by $MBM_SEARCH_INDEX (built
with ``python -m mbm.index build FOLDER --out INDEX.npz``), or photos uploaded here (with optional
same-name .txt captions and .wav/.mp3 voice notes), indexed on the spot.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import gradio as gr

from mbm.errors import InputError
from mbm.limits import HEAVY_CONCURRENCY_ID
from mbm.paths import RETRIEVAL_ASSETS, RETRIEVAL_DEMO_INDEX, ROOT
from mbm.ui.common import echo_markdown, example_cards, plain
from mbm.ui.params import file_value, guarded, number_value, text_value

UPLOADS = Path(tempfile.gettempdir()) / "mbm_search_collections"
MAX_UPLOAD_FILES = 300
MAX_K = 24
MAX_WEIGHT = 5.0
LABELS = {"speech": "spoken", "photo": "photo", "text": "text", "negative": "not"}


@lru_cache(maxsize=1)
def space():
    from mbm.scenarios.retrieval.model import load_space

    return load_space()


@lru_cache(maxsize=1)
def demo_index():
    """The default collection: $MBM_SEARCH_INDEX (an index built with `python -m mbm.index build`) or the demo."""
    from mbm.index import Index

    return Index.load(Path(os.environ.get("MBM_SEARCH_INDEX") or RETRIEVAL_DEMO_INDEX))


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


@lru_cache(maxsize=8)
def _uploaded_index(key: str, folder: str):
    from mbm.index import build

    return build(Path(folder), Path(folder) / ".index.npz", progress=False, space=space(), log=lambda *_: None)


def uploaded_index(files: list):
    """Index uploaded files (photos + same-name .txt / .wav / .mp3) in a folder named by their content."""
    if len(files) > MAX_UPLOAD_FILES:
        raise InputError(f"upload at most {MAX_UPLOAD_FILES} files to search (got {len(files)}); for a "
                         "larger collection use `python -m mbm.index build FOLDER --out INDEX`")
    h = hashlib.sha256()
    named = []
    for f in files:
        if isinstance(f, bytes):
            raise InputError("collection files must be uploads with file names (a data URL has none)")
        p = Path(f)
        named.append(p)
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    key = h.hexdigest()[:24]
    folder = UPLOADS / key
    if not folder.is_dir():
        tmp = UPLOADS / f".{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for p in named:
            shutil.copyfile(p, tmp / Path(p.name).name)
        tmp.rename(folder)
    return _uploaded_index(key, str(folder))


def _share_line(terms: dict[str, float], score: float) -> str:
    parts = [f"{LABELS.get(m, m)} {t:+.2f}" for m, t in terms.items()]
    return f"{score:.2f} = " + " ".join(parts)


@guarded("Nothing to search with")
def search_collection(speech=None, photo=None, text=None, negative=None, w_speech=None, w_photo=None,
                      w_text=None, w_negative=None, k=8, collection=None):
    """Search a collection with any mix of a spoken clip, a photo and typed text.

    Args: speech (audio file), photo (image file), text, negative (text to push away), a weight per
    input (0..5; None = the learned default), k (1..24 results), collection (files to search
    instead of the demo: photos + same-name .txt / .wav / .mp3).
    Returns the gallery [(image, caption)], a status line, and JSON: {"results": [{"item" (the path in the
    collection; not "path", which Gradio's client would take for a file to download), "score",
    "shares": {input: w * sim}, "caption", "transcript", "folded"}], "heard", "weights", "notes", "warnings",
    "readings": {"speech"/"text": {"read_as": [[caption, weight]], "off_topic": ImageNet name or null}}}.
    """
    from mbm.scenarios.retrieval.search import encode_query, search

    sp = space()
    d = sp.weights
    weights = {"speech": d["speech"] if w_speech is None else number_value(w_speech, "w_speech", 0, MAX_WEIGHT),
               "photo": d["photo"] if w_photo is None else number_value(w_photo, "w_photo", 0, MAX_WEIGHT),
               "text": d["text"] if w_text is None else number_value(w_text, "w_text", 0, MAX_WEIGHT),
               "negative": d["negative"] if w_negative is None else number_value(w_negative, "w_negative", 0, MAX_WEIGHT)}
    k = int(number_value(8 if k is None else k, "k", 1, MAX_K))
    files = collection if collection else None
    if files:
        paths = [file_value(f, f"collection[{i}]") for i, f in enumerate(files if isinstance(files, list) else [files])]
        index = uploaded_index([p for p in paths if p is not None])
    else:
        index = demo_index()
    query = encode_query(sp, index, speech=file_value(speech, "speech"), photo=file_value(photo, "photo"),
                         text=text_value(text, "text", 500), negative=text_value(negative, "negative", 500))
    results = search(sp, index, query, weights, k=k)
    gallery, rows = [], []
    for r in results:
        it = index.items[r.index]
        cap = _share_line(r.terms, r.score) + (f" (+{r.folded} near-duplicate{'s' * (r.folded > 1)})" if r.folded else "")
        if it.get("caption"):
            cap += f" — {it['caption'][:80]}"
        gallery.append((shown(index.path_of(r.index)), cap))
        rows.append({"item": it["path"], "score": round(r.score, 4),
                     "shares": {m: round(t, 4) for m, t in r.terms.items()}, "caption": it.get("caption", ""),
                     "transcript": it.get("transcript", ""), "folded": r.folded})
    used = [m for m in ("speech", "photo", "text") if m in query.vectors]
    status = [f"**{len(results)} results** from {len(index)} items; score = "
              + " + ".join(f"{weights[m]:g} × sim({LABELS[m]})" for m in used)
              + (f" − {weights['negative']:g} × sim(not)" if query.negative is not None else "")]
    status += [plain(n) for n in query.notes]  # the notes and warnings quote what was typed or heard
    status += ["⚠️ " + plain(w) for w in query.warnings]
    if rows:  # the shares in full (the gallery's captions are cut to fit)
        cols = [m for m in ("speech", "photo", "text", "negative") if m in rows[0]["shares"]]
        status.append("\n| # | item | score | " + " | ".join(LABELS[m] for m in cols) + " |\n|---|---|---|"
                      + "---|" * len(cols) + "\n" + "\n".join(
                          f"| {i + 1} | {plain(r['item'])}"
                          + (f" (+{r['folded']})" if r["folded"] else "") + f" | {r['score']:.2f} | "
                          + " | ".join(f"{r['shares'][m]:+.2f}" for m in cols) + " |" for i, r in enumerate(rows)))
    if index.skipped:
        status.append(f"{len(index.skipped)} files of the collection were skipped: "
                      + plain("; ".join(index.skipped[:5])))
    readings = {m: {"read_as": [list(x) for x in r.read_as], "off_topic": r.off_topic}
                for m, r in query.readings.items()}
    return gallery, "  \n".join(status), {"results": rows, "heard": query.heard, "weights": weights,
                                          "notes": query.notes, "warnings": query.warnings, "readings": readings}


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
            text = gr.Textbox(label="Typed query", placeholder="e.g. something to watch the news on",
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
                            "`python -m mbm.index build FOLDER --out INDEX`.</small>")
                collection = gr.File(file_count="multiple", label="Collection files", elem_id="search-collection")
            run = gr.Button("Search", variant="primary", elem_id="search-run")
        with gr.Column():
            status = echo_markdown(elem_id="search-status")
            gallery = gr.Gallery(label="Results (score = each input's share)", columns=4, height=520,
                                 elem_id="search-gallery")
            with gr.Accordion("Full result (what the API returns)", open=False):
                details = gr.JSON(show_label=False, elem_id="search-json")
    inputs = [speech, photo, text, negative, w_speech, w_photo, w_text, w_negative, k, collection]
    event = dict(fn=search_collection, inputs=inputs, outputs=[gallery, status, details], preprocess=False,
                 concurrency_id=HEAVY_CONCURRENCY_ID)
    run.click(**event, api_name="search")
    text.submit(**event, api_visibility="private")
    # the first: fusion finds what neither input alone ranks first (the painted door; docs/retrieval.md)
    examples = [[None, str(RETRIEVAL_ASSETS / "queries" / "monitor.jpg"), "a door"],
                [None, None, "something to watch the news on"],
                [str(RETRIEVAL_ASSETS / "queries" / "fan_spoken.wav"), None, None]]
    captions = ["colourful monitor photo + \"a door\"", "typed \"something to watch the news on\"",
                "spoken \"fan\""]
    kept = [i for i, e in enumerate(examples)
            if all(x is None or not x.startswith("/") or Path(x).is_file() for x in e)]
    if kept:
        with examples_row:
            load_example = example_cards([examples[i] for i in kept], [captions[i] for i in kept],
                                         [speech, photo, text], photo=1, label="Examples: click one to search",
                                         elem_id="search-examples")
        load_example.then(**event, api_visibility="private")
    return None
