"""One search: encode the inputs a person gave, score every item, fold near-duplicates.

score(item) = sum_m w_m * sim(q_m, item) - w_neg * sim(negative, item); each result carries the
terms, so the shares it shows add up to the score exactly.
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


@dataclass
class Result:
    index: int
    score: float
    terms: dict[str, float]  # modality (and "negative") -> w * sim; sums to score
    folded: int = 0  # near-duplicates folded under this result


def reading_note(what: str, reading) -> list[str]:
    """The status line for how a text was read: the captions it was read through."""
    return [f"{what} read as " + ", ".join(f'"{c}" {w:.0%}' for c, w in reading.read_as)] if reading.read_as else []


def off_topic_warning(words: str, reading) -> list[str]:
    """A warning when a text is nearer another ImageNet class than the search's subject (else none)."""
    from mbm.scenarios.retrieval.spec import CLASSES

    if reading.off_topic is None:
        return []
    kinds = ", ".join(c.replace("_", " ") for c in CLASSES)
    return [(f'"{words}" is nearer to "{reading.off_topic}" than to anything this search knows ({kinds}): '
             "its results are only the nearest of those, and may be unrelated")]


def encode_query(space, index, speech=None, photo=None, text: str | None = None,
                 negative: str | None = None) -> Query:
    from mbm.scenarios.retrieval.encoders import load_photo, photo_features, text_language_note, text_vectors
    from mbm.scenarios.retrieval.speech import transcribe  # recognisers kept within a memory budget

    text = (text or "").strip()[:MAX_QUERY_CHARS] or None
    negative = (negative or "").strip()[:MAX_QUERY_CHARS] or None
    if speech is None and photo is None and text is None:
        raise InputError("the query is empty: record or upload a spoken clip, add a photo, or type some words")
    vectors, notes, heard, readings, warnings = {}, [], None, {}, []

    def read(modality: str, words: str) -> None:  # typed or heard words: their query vector and reading
        minilm = text_vectors([words])
        vectors[modality] = space.text_query(space.text_sem(minilm))[0]
        readings[modality] = space.read_text(minilm[0])
        notes.extend(reading_note(modality, readings[modality]))
        warnings.extend(off_topic_warning(words, readings[modality]))

    if speech is not None:
        heard, cut, _ = transcribe(speech, index.vocabulary() if index is not None else ())
        notes += cut
        if heard:
            notes.append(f'heard: "{heard}"')
            read("speech", heard)
        else:
            notes.append("no words could be made out in the spoken clip; it was left out")
    if photo is not None:
        pooled, probs = photo_features([load_photo(photo)])
        vectors["photo"] = space.photo_query(space.photo_sem(pooled, probs)[0], space.appearance(pooled)[0])
    if text is not None:
        lang = text_language_note(text)
        if lang:
            notes.append(lang)
        read("text", text)
    neg = None
    if negative is not None:
        neg = space.text_query(space.text_sem(text_vectors([negative])))[0]
    if not vectors:
        raise InputError("nothing usable in the query: " + "; ".join(notes))
    return Query(vectors, neg, notes, heard, readings, warnings)


def search(space, index, query: Query, weights: dict[str, float], k: int = 8,
           fold: bool = True) -> list[Result]:
    from mbm.scenarios.retrieval.model import score_terms

    if len(index) == 0:
        raise InputError("the collection has no items; index a folder with "
                         "`python -m mbm.index build FOLDER --out INDEX` or upload photos")
    if all(float(weights.get(m, 0)) == 0 for m in query.vectors):
        raise InputError("every slider of the given inputs is at 0; raise at least one")
    terms = score_terms(index.vectors, query.vectors, weights, query.negative)
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
        results.append(Result(int(i), float(total[i]), {m: float(t[i]) for m, t in terms.items()}))
        kept_vectors.append(v)
    return results
