"""The second pass of a search for words: the photos a text (or spoken clip) finds first pull up their
look-alikes.

Pseudo-relevance feedback (Rocchio's, as "average query expansion" in image search, Chum et al. 2007):
the words' first-pass score ranks the items; the ``feedback_k`` best are taken as examples of what
the words mean, and every item gains ``feedback_weight`` x its mean photo similarity to them, the
similarity a photo query of each of them would give (device head times that photo's device gate,
appearance, and the Bhattacharyya coefficient of the ImageNet concepts). So a description that reaches
only some photos of a kind through the concepts ("a pouched animal that hops" -> a few wallabies)
reaches their look-alikes too. Written here because the scan is exact and the term must stay one
input's exact share (no library's query expansion gives per-input terms). ``feedback_k`` 0 turns it off.
"""

from __future__ import annotations

import numpy as np


def item_photo_queries(space, index, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items ``rows`` as photo queries: (their query vectors (k, 192), their ImageNet probabilities rebuilt
    from the stored top concepts (k, 1000), their device gates (k,))."""
    probs = np.zeros((len(rows), 1000), np.float32)
    np.put_along_axis(probs, index.concept_ids[rows].astype(np.int64), index.concept_p[rows], 1)
    gates = space.concepts.photo_gate(probs)
    q = space.photo_query(gates[:, None] * index.photo_sem[rows], index.app[rows])
    return q, probs, gates


def feedback_scores(space, index, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A words input's first-pass scores (N,) -> (the feedback term (N,), unweighted by the slider; the
    rows of the items it was taken from (k,), best first)."""
    from mbm.scenarios.retrieval.concepts import photo_concept_scores

    co = space.concepts
    k = min(int(co.feedback_k), len(first))
    if k <= 0 or co.feedback_weight == 0:
        return np.zeros(len(first), np.float32), np.zeros(0, np.int64)
    rows = np.argsort(-first, kind="stable")[:k]
    q, probs, gates = item_photo_queries(space, index, rows)
    sim = q @ index.vectors.T  # (k, N)
    for j in range(k):  # one gather over the items' top concepts per example photo
        sim[j] += co.photo_concept_weight * (1 - gates[j]) * photo_concept_scores(
            probs[j], index.concept_ids, index.concept_p)
    return (co.feedback_weight * sim.mean(0)).astype(np.float32), rows
