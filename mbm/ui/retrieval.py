"""The Search tab: find items of a collection by a spoken clip, a photo and/or typed text.

score = sum_m w_m * sim(q_m, item) - w_neg * sim(negative text, item); each result shows every input's
share of its score. The collection is the shipped demo (assets/retrieval), an index named by $MBM_SEARCH_INDEX (built
with ``python -m mbm.scenarios.retrieval.index build FOLDER --out INDEX.npz``), or photos uploaded here (with optional
same-name .txt captions and .wav/.mp3 voice notes), indexed on the spot.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import gradio as gr

from mbm.errors import InputError
from mbm.limits import COLLECTION_CONCURRENCY, COLLECTION_CONCURRENCY_ID, HEAVY_CONCURRENCY_ID
from mbm.paths import ASSETS, RETRIEVAL_ASSETS, RETRIEVAL_DEMO_INDEX, ROOT
from mbm.ui import models
from mbm.ui.common import NEWEST, REQUEST_ID_JS, answer_html, echo_markdown, plain, show_answer
from mbm.ui.examples import example_cards
from mbm.ui.params import file_value, guarded, number_value, text_value
from mbm.ui.retrieval_collections import collection_files, index_collection, uploaded_index, visitor_of

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
    """The Search tab: the examples first, the query inputs beside the answer and results, then the events."""
    gr.Markdown("Search the collection with **any mix** of a spoken clip, a photo and typed text; a slider "
                "per input sets how much it counts (defaults learned). Each result shows each input's "
                "exact share of its score; near-duplicates are folded.", elem_id="search-help")
    examples_row = gr.Row()  # the examples come first (filled by _wire_search, once the event exists)
    with gr.Row(equal_height=False):
        with gr.Column():
            c = _query_inputs()
        with gr.Column():
            c["headline"] = gr.HTML(NO_ANSWER_YET, elem_id="search-headline")  # the answer at a glance
            # the results right under the answer (on a phone the shares' table below them was a screen long)
            c["gallery"] = gr.Gallery(label="Results (score = each input's share)", columns=4, height="auto",
                                      elem_id="search-gallery")
            c["status"] = echo_markdown(elem_id="search-status")
            with gr.Accordion("Full result (what the API returns)", open=False):
                c["details"] = gr.JSON(show_label=False, elem_id="search-json")
    _wire_search(c, examples_row)


def _query_inputs() -> dict:
    """The query's inputs (spoken clip, photo, text, "not this"), a slider per input's weight, an uploaded
    collection, the demo collection and the Search button, by name."""
    sp_weights = None
    try:
        sp_weights = space().weights
    except Exception:  # noqa: BLE001 - the tab still builds; a search then says what is missing
        sp_weights = {"speech": 1.0, "photo": 1.0, "text": 1.0, "negative": 0.5}
    c = {"speech": gr.Audio(sources=["microphone", "upload"], type="filepath", label="Spoken query",
                            elem_id="search-audio"),
         "photo": gr.Image(sources=["upload", "webcam"], type="filepath", label="Photo query", height=220,
                           elem_id="search-photo"),
         "text": gr.Textbox(label="Typed query", placeholder="e.g. a screen for movies, or a pouched animal that hops",
                            max_lines=1, elem_id="search-text"),
         "negative": gr.Textbox(label="Not this (optional)", placeholder="e.g. blinds", max_lines=1,
                                elem_id="search-negative")}
    with gr.Accordion("How much each input counts", open=False):
        for key, label in (("speech", "spoken"), ("photo", "photo"), ("text", "text"), ("negative", "not")):
            c[f"w_{key}"] = gr.Slider(0, MAX_WEIGHT, sp_weights[key], step=0.05, label=label,
                                      elem_id=f"search-w-{key.replace('_', '-')}")
        c["k"] = gr.Slider(1, MAX_K, 8, step=1, label="results", elem_id="search-k")
    with gr.Accordion("Your own collection (optional)", open=False):
        gr.Markdown("<small>Upload photos, with optional same-name .txt captions and .wav/.mp3 "
                    "voice notes; they are searched instead of the demo. For a folder use "
                    "`python -m mbm.scenarios.retrieval.index build FOLDER --out INDEX`.</small>")
        c["collection"] = gr.File(file_count="multiple", label="Collection files", elem_id="search-collection")
    c["which"] = gr.Radio([(label, name) for name, (label, _) in DEMO_COLLECTIONS.items()], value="devices",
                          label="Demo collection", elem_id="search-which")
    c["run"] = gr.Button("Search", variant="primary", elem_id="search-run")
    return c


def _wire_search(c: dict, examples_row) -> None:
    """The events: the page's searches (Search, Enter, an example card), the API's /search, and the examples."""
    inputs = [c[k] for k in ("speech", "photo", "text", "negative", "w_speech", "w_photo", "w_text", "w_negative", "k",
                             "collection", "which")]
    gallery, status, details, headline = c["gallery"], c["status"], c["details"], c["headline"]
    event = {"fn": search_collection, "inputs": inputs, "outputs": [gallery, status, details], "preprocess": False,
             "concurrency_id": HEAVY_CONCURRENCY_ID}
    # An uploaded collection is indexed first, in its own queue (COLLECTION_CONCURRENCY at once), so that
    # visitors indexing never hold the shared slots every other request needs; the search then finds it ready.
    first = {"fn": index_collection, "inputs": [c["collection"]], "outputs": [status], "preprocess": False,
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

    chain(c["run"].click)
    chain(c["text"].submit)
    with gr.Row(visible=False):
        api_search = gr.Button("search", elem_id="search-api")
    api_search.click(**first).then(**event, api_name="search")
    examples, captions = [row for row, _ in EXAMPLES], [caption for _, caption in EXAMPLES]
    kept = [i for i, e in enumerate(examples)
            if all(x is None or not x.startswith("/") or Path(x).is_file() for x in e)]
    if kept:
        with examples_row:  # the collection first in a card's row: the cards read the typed text from the last
            load_example = example_cards([[examples[i][3], *examples[i][:3]] for i in kept],
                                         [captions[i] for i in kept], [c["which"], c["speech"], c["photo"], c["text"]],
                                         photo=2, label="Examples: click one to search", elem_id="search-examples")
        chain(load_example.then)
