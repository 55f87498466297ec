"""One search: encode the inputs a person gave, score every item, fold near-duplicates.

score(item) = sum_m w_m * sim(q_m, item) - w_neg * sim(negative, item); each result carries the
terms, so the shares it shows add up to the score exactly.

A text's similarity to an item is g * (device reading) + concept_weight * (ConSE over the 1000
ImageNet concepts) + text_weight * (its match with the item's caption, transcript and file/folder names),
g the text's device gate (``Concepts.text_gate``); a photo's is the device head (times the photo's own
gate) + the appearance + photo_concept_weight * (1 - gate) * the Bhattacharyya coefficient of the two
photos' ImageNet probabilities. Each result says why it came (``Result.why``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mbm.errors import InputError

MAX_QUERY_CHARS = 500
FOLD_LOOKAHEAD = 4  # after k results, 4k more items are checked for near-duplicates of them


@dataclass
class Query:
    vectors: dict[str, np.ndarray]  # modality -> query vector (192)
    negative: np.ndarray | None
    notes: list[str] = field(default_factory=list)
    heard: str | None = None  # the transcript of the spoken clip
    readings: dict = field(default_factory=dict)  # "speech" / "text" -> TextReading: how the words were read
    warnings: list[str] = field(default_factory=list)  # inputs off the search's subject
    open: dict = field(default_factory=dict)  # modality -> {"minilm", "pi"} or {"probs", "gate"}: open vocabulary


@dataclass
class Result:
    index: int
    score: float
    terms: dict[str, float]  # modality (and "negative") -> w * sim; sums to score
    folded: int = 0  # near-duplicates folded under this result
    why: list[str] = field(default_factory=list)  # what matched: concepts, caption words, names


def reading_note(what: str, reading) -> list[str]:
    """The status line for how a text was read: the captions it was read through."""
    return [f"{what} read as " + ", ".join(f'"{c}" {w:.0%}' for c, w in reading.read_as)] if reading.read_as else []


def off_topic_warning(words: str, reading) -> list[str]:
    """A warning when a text is far from everything the search knows (else none), naming the nearest."""
    if reading.off_topic is None:
        return []
    return [(f'"{words}" is far from everything this search knows (the 1000 ImageNet concepts, the device '
             f'captions and this collection\'s captions and names); the nearest is "{reading.off_topic}" '
             f"(cosine {reading.nearest_cos:.2f}): the results may be unrelated")]


def concept_note(what: str, reading) -> list[str]:
    """The status line for the concepts a text was read as (the largest shares of its distribution)."""
    if not reading.concepts:
        return []
    return [f"{what} means " + ", ".join(f'"{c}" {w:.0%}' for c, w in reading.concepts)]


def read_words(space, index, minilm):
    """One unit MiniLM vector -> its reading (captions, concepts, off-topic flag) and open-vocabulary query."""
    reading = space.read_text(minilm, index)
    co = space.concepts
    pi = co.distribution(minilm[None])[0]
    gate = float(co.text_gate(minilm[None], space.anchor_text)[0])
    top = np.argsort(-pi)[:2]
    reading.concepts = [(co.names[int(c)], round(float(pi[c]), 3)) for c in top if pi[c] >= 0.1]
    return reading, {"minilm": minilm, "pi": pi, "gate": gate}


def spoken_vocabulary(index) -> tuple[str, ...]:
    """What the speech recogniser's grammar listens for: the collection's captions, transcripts, file and folder
    names (beside PocketSphinx's general language model for descriptions). The ImageNet names are not in it:
    they cost the device collection's spoken names (docs/retrieval.md, "Open vocabulary")."""
    return tuple(sorted(set(index.vocabulary() if index is not None else ())))


def encode_query(space, index, speech=None, photo=None, text: str | None = None,
                 negative: str | None = None, speech_apart: bool = False) -> Query:
    """The query's vectors, readings and notes. ``speech_apart``: the clip is heard in a child process (the app:
    PocketSphinx holds the GIL while it decodes; ``mbm.scenarios.retrieval.speech``)."""
    from mbm.scenarios.retrieval.encoders import load_photo, photo_features, text_language_note, text_vectors
    from mbm.scenarios.retrieval.speech import transcribe  # recognisers kept within a memory budget

    text = (text or "").strip()[:MAX_QUERY_CHARS] or None
    negative = (negative or "").strip()[:MAX_QUERY_CHARS] or None
    if speech is None and photo is None and text is None:
        raise InputError("the query is empty: record or upload a spoken clip, add a photo, or type some words")
    vectors, notes, heard, readings, warnings = {}, [], None, {}, []

    open_ = {}

    def read(modality: str, words: str) -> None:  # typed or heard words: their query vector and reading
        minilm = text_vectors([words])
        readings[modality], open_[modality] = read_words(space, index, minilm[0])
        vectors[modality] = open_[modality]["gate"] * space.text_query(space.text_sem(minilm))[0]
        notes.extend(concept_note(modality, readings[modality]))
        if open_[modality]["gate"] >= 0.5:
            notes.extend(reading_note(modality, readings[modality]))
        warnings.extend(off_topic_warning(words, readings[modality]))

    if speech is not None:
        heard, cut, _ = transcribe(speech, spoken_vocabulary(index), free=True, apart=speech_apart)
        notes += cut
        if heard:
            notes.append(f'heard: "{heard}"')
            read("speech", heard)
        else:
            notes.append("no words could be made out in the spoken clip; it was left out")
    if photo is not None:
        pooled, probs = photo_features([load_photo(photo)])
        gate = float(space.concepts.photo_gate(probs)[0])
        vectors["photo"] = space.photo_query(gate * space.photo_sem(pooled, probs)[0], space.appearance(pooled)[0])
        open_["photo"] = {"probs": probs[0], "gate": gate}
    if text is not None:
        lang = text_language_note(text)
        if lang:
            notes.append(lang)
        read("text", text)
    neg = None
    if negative is not None:
        minilm = text_vectors([negative])
        _, open_["negative"] = read_words(space, index, minilm[0])
        neg = open_["negative"]["gate"] * space.text_query(space.text_sem(minilm))[0]
    if not vectors:
        raise InputError("nothing usable in the query: " + "; ".join(notes))
    return Query(vectors, neg, notes, heard, readings, warnings, open_)


def open_terms(space, index, query: Query) -> dict[str, dict[str, np.ndarray]]:
    """Per input, the open-vocabulary parts of its similarity over all items (N,) each, unweighted by the
    slider: "concept" (ConSE), "caption" and "name" (text matches) for words; "concept" (Bhattacharyya,
    times 1 - the photo's gate) for a photo. Empty when the index has no open-vocabulary arrays."""
    from mbm.scenarios.retrieval.concepts import concept_scores, photo_concept_scores, text_match_scores

    if not index.open_vocabulary():
        return {}
    co, out = space.concepts, {}
    for m, o in query.open.items():
        if "pi" in o:
            out[m] = {"concept": co.concept_weight * (1 - co.concept_gated * o["gate"])
                      * concept_scores(o["pi"], index.concept_ids, index.concept_p) ** co.concept_power,
                      "caption": co.text_weight * text_match_scores(o["minilm"], index.text_vec, index.extra_mask,
                                                                    co.text_floor),
                      "name": co.text_weight * text_match_scores(o["minilm"], index.name_vec, index.name_mask,
                                                                 co.text_floor)}
        else:
            out[m] = {"concept": co.photo_concept_weight * (1 - o["gate"])
                      * photo_concept_scores(o["probs"], index.concept_ids, index.concept_p)}
    return out


def short_text(text: str, n: int) -> str:
    """text cut to n characters (an ellipsis where cut)."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 1] + "…"


def explain(space, index, query: Query, i: int, parts: dict) -> list[str]:
    """Why item i came: the concept that carried most of each input's concept score, and the caption or
    name it matched ("text: matched 'wallaby' (photo 0.83)", "text: caption 'a kangaroo at the zoo' 0.71")."""
    co, why = space.concepts, []
    for m, o in query.open.items():
        if m == "negative" or m not in parts:
            continue
        label = {"speech": "spoken", "photo": "photo", "text": "text"}.get(m, m)
        ids, p = index.concept_ids[i].astype(np.int64), index.concept_p[i]
        if "pi" in o:
            contrib = p * o["pi"][ids]
            k = int(np.argmax(contrib))
            if parts[m]["concept"][i] > 0.02:
                why.append(f"{label}: matched '{co.names[ids[k]]}' {o['pi'][ids[k]]:.2f} (photo {p[k]:.2f})")
            for what, vec, text in (("caption", index.text_vec, " . ".join(
                    t for t in (index.items[i].get("caption"), index.items[i].get("transcript")) if t)),
                    ("name", index.name_vec, index.items[i].get("path", ""))):
                if parts[m][what][i] > 0:
                    why.append(f"{label}: {what} '{short_text(text, 60)}' {float(vec[i] @ o['minilm']):.2f}")
        else:
            contrib = np.sqrt(np.clip(p, 0, None) * np.clip(o["probs"][ids], 0, None))
            k = int(np.argmax(contrib))
            if parts[m]["concept"][i] > 0.02:
                why.append(f"photo: both look like '{co.names[ids[k]]}' (query {o['probs'][ids[k]]:.2f}, "
                           f"item {p[k]:.2f})")
    return why


def score_all(space, index, query: Query, weights: dict[str, float]) -> tuple[dict[str, np.ndarray], dict]:
    """Every item's per-input terms (modality -> (N,), summing to the score) and the open-vocabulary parts."""
    from mbm.scenarios.retrieval.model import score_terms

    terms = score_terms(index.vectors, query.vectors, weights, query.negative)
    parts = open_terms(space, index, query)
    for m, ps in parts.items():
        sign = -1.0 if m == "negative" else 1.0
        terms[m] = terms[m] + sign * float(weights.get(m, 0.0)) * sum(ps.values())
    return terms, parts


def search(space, index, query: Query, weights: dict[str, float], k: int = 8,
           fold: bool = True) -> list[Result]:
    """The top k items (near-duplicates folded), each with its per-input terms and why it came."""
    if len(index) == 0:
        raise InputError("the collection has no items; index a folder with "
                         "`python -m mbm.scenarios.retrieval.index build FOLDER --out INDEX` or upload photos")
    if all(float(weights.get(m, 0)) == 0 for m in query.vectors):
        raise InputError("every slider of the given inputs is at 0; raise at least one")
    terms, parts = score_all(space, index, query, weights)
    total = sum(terms.values())
    order = np.argsort(-total, kind="stable")
    results: list[Result] = []
    kept_vectors: list[np.ndarray] = []
    scanned_after = 0
    for i in order:
        v = index.vectors[i]
        if fold and kept_vectors:
            sims = np.stack(kept_vectors) @ v
            j = int(np.argmax(sims))
            if sims[j] >= space.dup_threshold:
                results[j].folded += 1
                continue
        if len(results) >= k:
            # full: the next FOLD_LOOKAHEAD items are scanned only to count near-duplicates of those shown
            scanned_after += 1
            if not fold or scanned_after > FOLD_LOOKAHEAD * k:
                break
            continue
        results.append(Result(int(i), float(total[i]), {m: float(t[i]) for m, t in terms.items()},
                              why=explain(space, index, query, int(i), parts) if parts else []))
        kept_vectors.append(v)
    return results
