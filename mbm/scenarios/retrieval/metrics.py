"""Retrieval metrics: average precision and mAP against chance, leave-one-out R@1 of identities, and the R@1 of
mixed queries (a photo of one class and a text naming another). Definitions are in docs/retrieval.md."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from mbm.scenarios.retrieval.spec import CLASSES


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Average precision of one query's scores over the items (``relevant``: a bool per item); NaN if none is."""
    order = np.argsort(-scores, kind="stable")
    rel = relevant[order]
    if not rel.any():
        return float("nan")
    hits = np.cumsum(rel)
    return float((hits[rel] / (np.flatnonzero(rel) + 1)).mean())


def mean_ap(vectors: np.ndarray, queries: np.ndarray, q_labels, labels: np.ndarray,
            answered: np.ndarray | None = None) -> tuple[float, float]:
    """(mAP, chance mAP ~ share of relevant items) of query vectors over the item vectors; a query
    not ``answered`` (a spoken one where nothing was heard: the app returns no results) counts 0."""
    return mean_ap_scores(queries @ vectors.T, q_labels, labels, answered)


def mean_ap_scores(s: np.ndarray, q_labels, labels: np.ndarray,
                   answered: np.ndarray | None = None) -> tuple[float, float]:
    """:func:`mean_ap` of a (Q, N) score matrix."""
    answered = np.ones(len(s), bool) if answered is None else np.asarray(answered, bool)
    aps = [average_precision(s[i], labels == q_labels[i]) if answered[i] else 0.0 for i in range(len(s))]
    chance = float(np.mean([(labels == c).mean() for c in q_labels]))
    return float(np.nanmean(aps)), chance


def r1_leave_one_out(vectors: np.ndarray, queries: np.ndarray, ids: list) -> dict:
    """Top-1 (the query excluded) of the same identity; queries whose identity has no other item skipped."""
    ids = np.asarray(ids)
    s = queries @ vectors.T
    np.fill_diagonal(s, -np.inf)
    counts = defaultdict(int)
    for i in ids:
        counts[i] += 1
    ok = np.array([counts[i] > 1 for i in ids])
    top = s.argmax(1)
    hit = ids[top] == ids
    per = defaultdict(list)
    for i in np.flatnonzero(ok):
        per[ids[i]].append(hit[i])
    n = len(ids)
    chance = float(np.mean([(counts[ids[i]] - 1) / (n - 1) for i in np.flatnonzero(ok)])) if ok.any() else 0.0
    return {"r1": float(hit[ok].mean()) if ok.any() else float("nan"),
            "mean_per_identity": float(np.mean([np.mean(v) for v in per.values()])) if per else float("nan"),
            "queries": int(ok.sum()), "skipped": int((~ok).sum()), "identities": len(per), "chance": chance}


def mixed_r1(space, vectors, sem, app, labels, sources, mixed_sem, weights, limit=None, seed=0,
             photo_scores=None, text_scores=None) -> dict:
    """Photo of class A + a text naming class B: the top hit must be a B item of the photo's source.
    ``photo_scores`` (N, N) and ``text_scores`` (N, classes): the app's scores (else the item vectors')."""
    rng = np.random.default_rng(seed)
    sources = np.asarray(sources)
    pairs = [(i, b) for i in range(len(labels)) for b in range(len(CLASSES)) if b != labels[i]
             and np.any((labels == b) & (sources == sources[i]))]
    if limit and len(pairs) > limit:
        pairs = [pairs[j] for j in sorted(rng.choice(len(pairs), limit, replace=False))]
    hits = {"mixed": [], "photo": [], "text": []}
    if text_scores is None:
        text_scores = vectors @ space.text_query(mixed_sem).T  # (N, classes)
    for i, b in pairs:
        photo = (photo_scores[i].copy() if photo_scores is not None
                 else vectors @ space.photo_query(sem[i], app[i]))
        photo[i] = -np.inf
        text = text_scores[:, b].copy()
        text[i] = -np.inf
        rel = (labels == b) & (sources == sources[i])
        for key, s in (("mixed", weights["photo"] * photo + weights["text"] * text), ("photo", photo), ("text", text)):
            hits[key].append(bool(rel[int(np.argmax(s))]))
    out = {k: float(np.mean(v)) if v else float("nan") for k, v in hits.items()}
    out["n"] = len(pairs)
    out["chance"] = float(np.mean([((labels == b) & (sources == sources[i])).sum() / (len(labels) - 1)
                                   for i, b in pairs])) if pairs else 0.0
    return out
