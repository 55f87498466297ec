"""The search predictor: any mix of a spoken clip, a photo and words -> the top items of a collection.

    p = RetrievalPredictor.from_checkpoint()            # checkpoints/retrieval.pt
    answer = p.predict(Index.load("index.npz"), text="a screen for movies", k=4)
    answer.results[0].terms, answer.query.notes, answer.query.warnings

Each result carries every input's exact share of its score (``mbm.scenarios.retrieval.search``); the
collection to search is an index built by ``mbm.scenarios.retrieval.index``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mbm.scenarios.retrieval.model import Space, load_space
from mbm.scenarios.retrieval.search import Query, Result, encode_query, search


@dataclass
class SearchAnswer:
    """One search: how the query was read, the results (best first) and the slider weights used."""

    query: Query
    results: list[Result]
    weights: dict[str, float]


class RetrievalPredictor:
    """The shared search space of a checkpoint, asked with a query and a collection."""

    def __init__(self, space: Space):
        self.space = space

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None) -> RetrievalPredictor:
        """Load ``path`` (default: the shipped ``checkpoints/retrieval.pt``)."""
        return cls(load_space(path))

    @property
    def weights(self) -> dict[str, float]:
        """The learned default weight of each input ("speech", "photo", "text", "negative")."""
        return dict(self.space.weights)

    def predict(self, index, speech=None, photo=None, text: str | None = None, negative: str | None = None,
                weights: dict[str, float] | None = None, k: int = 8, speech_apart: bool = False) -> SearchAnswer:
        """The top ``k`` items of ``index`` (an :class:`~mbm.scenarios.retrieval.index.Index`) for the query.

        ``weights`` overrides the defaults per input; ``speech_apart`` hears the clip in a child process.
        Raises :class:`mbm.errors.InputError` for an empty query, an empty collection or all weights 0.
        """
        weights = self.weights | (weights or {})
        query = encode_query(self.space, index, speech=speech, photo=photo, text=text, negative=negative,
                             speech_apart=speech_apart)
        return SearchAnswer(query, search(self.space, index, query, weights, k=k), weights)
