"""The shared embedding space and the exact, per-input scoring.

An item's vector has two parts: a *semantic* part (128, what it is; photo, caption and voice-note
transcript all land there through the trained heads) and an *appearance* part (64, how the photo
looks: a PCA of the EfficientNet-Lite0 pooled features, fitted on the training photos). Both parts are unit
vectors scaled by ``a`` and ``b`` (a^2 + b^2 = 1), so the item vector is a unit vector of 192 floats:

    photo query  [a * sem(photo), b * app(photo)]  -> sim = a^2 cos_sem + b^2 cos_app
    text query   [sem(text), 0]                    -> sim = a cos_sem

A text's semantic vector is read off the *anchors*, the training captions: their semantic vectors
(from the trained text head) averaged with weights softmax(MiniLM cosine / T). A text the heads never
saw ("a box fan") thus lands where the captions nearest in MiniLM's own meaning lie.

A text can be about none of the classes ("a red sports car"). It is then still read as its nearest
captions, so the search also measures how far it is off its subject: the text's best MiniLM cosine
to a caption minus its best cosine to the name of an ImageNet class that is none of the devices
("sports car"). Below ``off_topic_margin`` (chosen on validation paraphrases) the app says so.

A query's score is sum_m w_m * sim(q_m, item) - w_neg * sim(negative text, item), so each input's
share is exact (``scores(..)`` returns the terms).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mbm.checkpoint import Checkpoint, load_checkpoint
from mbm.scenarios.retrieval.concepts import Concepts
from mbm.scenarios.retrieval.encoders import IMAGE_DIM, N_CLASSES, TEXT_DIM

SEM_DIM = 128
APP_DIM = 64
VECTOR_DIM = SEM_DIM + APP_DIM
MODALITIES = ("speech", "photo", "text")
# 2: text through the caption anchors; 3: + their captions and the off-topic check; 4: EfficientNet-Lite0 photo
# features (1280 + 1000 into the photo head, a 1280-wide PCA) instead of SqueezeNet's (512 + 1000);
# 5: + the open-vocabulary concepts (the 1000 ImageNet classes read with MiniLM)
FORMAT = "mbm-retrieval-5"
READ_AS_SHOWN = 2  # a reading names at most this many captions ...
READ_AS_MIN_WEIGHT = 0.1  # ... each with at least this weight


def photo_input(pooled: np.ndarray, probs: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(pooled, dtype=torch.float32)
    return torch.cat([F.normalize(x, dim=-1), torch.as_tensor(probs, dtype=torch.float32).clamp_min(0).sqrt()], -1)


def text_input(minilm: np.ndarray, conse: np.ndarray) -> torch.Tensor:
    return torch.cat([torch.as_tensor(minilm, dtype=torch.float32),
                      torch.as_tensor(conse, dtype=torch.float32).clamp_min(0).sqrt()], -1)


class Heads(nn.Module):
    """Projections of the frozen features into the semantic space (+ a learned temperature)."""

    def __init__(self):
        super().__init__()
        # Linear both. Measured on the held-out photos with SqueezeNet features (512 + 1000): a photo MLP
        # (1512-512-128) gave text mAP 0.646 / photo r1 0.806 / mixed r1 0.612 against the linear head's
        # 0.637 / 0.794 / 0.734. EfficientNet-Lite0's 1280 + 1000 keep the linear head.
        self.photo = nn.Linear(IMAGE_DIM + N_CLASSES, SEM_DIM)
        self.text = nn.Linear(TEXT_DIM + N_CLASSES, SEM_DIM)
        self.log_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))

    def photo_sem(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.photo(x), dim=-1)

    def text_sem(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(x), dim=-1)


@dataclass
class TextReading:
    """How one text was read: the captions it was read through, as (caption, softmax weight), the
    largest first; the ImageNet concepts it means (name, share; filled by the search); and, when it is far
    from every concept, caption and item text the search knows (best cosine under the
    concepts' ``off_topic_floor``), the nearest of them (else None), with that best cosine."""

    read_as: list[tuple[str, float]]
    off_topic: str | None
    concepts: list[tuple[str, float]] = field(default_factory=list)
    nearest_cos: float = 0.0


@dataclass
class Space:
    """Trained heads + text anchors + the appearance PCA + the scoring constants (a, b, default weights)."""

    heads: Heads
    pca_mean: np.ndarray  # (IMAGE_DIM,)
    pca_components: np.ndarray  # (64, IMAGE_DIM)
    a: float  # semantic scale; b = sqrt(1 - a^2)
    weights: dict[str, float]  # learned default slider values per modality (+ "negative")
    anchor_text: np.ndarray  # (K, 384) unit MiniLM vectors of the training captions
    anchor_sem: np.ndarray  # (K, 128) their semantic vectors (the trained text head's)
    anchor_temperature: float  # softmax temperature over MiniLM cosines
    anchor_captions: tuple[str, ...]  # (K,) the captions themselves
    other_text: np.ndarray  # (M, 384) unit MiniLM vectors of the ImageNet class names that are no device
    other_names: tuple[str, ...]  # (M,) those names
    off_topic_margin: float  # caption cosine - other-name cosine under which a text is off the subject
    dup_threshold: float = 0.985  # item-vector cosine above which a lower result is folded
    concepts: Concepts | None = None  # the open vocabulary (mbm.scenarios.retrieval.concepts)

    @property
    def b(self) -> float:
        return float(np.sqrt(max(1 - self.a ** 2, 0.0)))

    def appearance(self, pooled: np.ndarray) -> np.ndarray:
        x = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True).clip(1e-8)
        z = (x - self.pca_mean) @ self.pca_components.T
        return (z / np.linalg.norm(z, axis=-1, keepdims=True).clip(1e-8)).astype(np.float32)

    @torch.inference_mode()
    def photo_sem(self, pooled: np.ndarray, probs: np.ndarray) -> np.ndarray:
        return self.heads.photo_sem(photo_input(pooled, probs)).numpy()

    def text_sem(self, minilm: np.ndarray) -> np.ndarray:
        """Unit MiniLM vectors (N, 384) -> unit semantic vectors (N, 128), through the anchors.

        Measured (docs/retrieval.md): the text head applied directly fits its 56 captions and little else;
        read through MiniLM's neighbourhoods, unseen wordings land on the right class far more often."""
        w = torch.from_numpy(np.asarray(minilm, np.float32) @ self.anchor_text.T / self.anchor_temperature)
        v = w.softmax(-1).numpy() @ self.anchor_sem  # (N, K) @ (K, 128)
        return (v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-8)).astype(np.float32)

    def topic_margins(self, minilm: np.ndarray) -> np.ndarray:
        """Unit MiniLM vectors (N, 384) -> (N,) best cosine to a caption - best cosine to another name."""
        minilm = np.asarray(minilm, np.float32)
        return (minilm @ self.anchor_text.T).max(1) - (minilm @ self.other_text.T).max(1)

    def off_topic(self, minilm: np.ndarray) -> np.ndarray:
        """Unit MiniLM vectors (N, 384) -> (N,) bool: nearer another ImageNet name than any caption
        (by more than ``off_topic_margin``)."""
        return self.topic_margins(minilm) < self.off_topic_margin

    def nearest_known(self, minilm: np.ndarray, index=None) -> tuple[float, str]:
        """One unit MiniLM vector -> (best cosine, what it is) over everything the search knows: the ImageNet
        concepts' texts, the device captions and, given an index, its items' captions, transcripts and names."""
        minilm = np.asarray(minilm, np.float32)
        best = self.concepts.nearest(minilm)
        s = self.anchor_text @ minilm
        best = max(best, (float(s.max()), self.anchor_captions[int(np.argmax(s))]))
        if index is not None and len(index) and index.open_vocabulary():
            for vec, mask, what in ((index.text_vec, index.extra_mask, "caption"),
                                    (index.name_vec, index.name_mask, "name")):
                if mask.any():
                    s = np.where(mask, vec @ minilm, -1.0)
                    i = int(np.argmax(s))
                    it = index.items[i]
                    text = (" . ".join(t for t in (it.get("caption"), it.get("transcript")) if t)
                            if what == "caption" else it.get("path", ""))
                    best = max(best, (float(s[i]), f"{text[:60]} ({what} of {Path(it.get('path', '?')).name})"))
        return best

    def off_topic_open(self, minilm: np.ndarray, index=None) -> np.ndarray:
        """Unit MiniLM vectors (N, 384) -> (N,) bool: far from everything the search knows."""
        return np.array([self.nearest_known(m, index)[0] < self.concepts.off_topic_floor
                         for m in np.atleast_2d(minilm)])

    def read_text(self, minilm: np.ndarray, index=None) -> TextReading:
        """One unit MiniLM vector (384,) -> how it is read (the captions and the off-topic check)."""
        minilm = np.asarray(minilm, np.float32)
        w = torch.from_numpy(self.anchor_text @ minilm / self.anchor_temperature).softmax(0).numpy()  # (K,)
        read_as = [(self.anchor_captions[k], round(float(w[k]), 3)) for k in np.argsort(-w)[:READ_AS_SHOWN]
                   if w[k] >= READ_AS_MIN_WEIGHT]
        cos, what = self.nearest_known(minilm, index)
        return TextReading(read_as, what if cos < self.concepts.off_topic_floor else None, nearest_cos=round(cos, 3))

    def item_vectors(self, photo_sem: np.ndarray, app: np.ndarray, extra_sem: np.ndarray | None = None,
                     extra_mask: np.ndarray | None = None) -> np.ndarray:
        """(N, 192) unit item vectors; ``extra_sem`` (caption/voice-note meaning) is averaged in where masked."""
        sem = photo_sem.copy()
        if extra_sem is not None:
            m = np.asarray(extra_mask, bool)
            sem[m] = sem[m] + extra_sem[m]
            sem /= np.linalg.norm(sem, axis=1, keepdims=True).clip(1e-8)
        return np.concatenate([self.a * sem, self.b * app], 1).astype(np.float32)

    def photo_query(self, photo_sem: np.ndarray, app: np.ndarray) -> np.ndarray:
        return np.concatenate([self.a * photo_sem, self.b * app], -1).astype(np.float32)

    @staticmethod
    def text_query(text_sem: np.ndarray) -> np.ndarray:
        return np.concatenate([text_sem, np.zeros(text_sem.shape[:-1] + (APP_DIM,), np.float32)], -1)

    def state(self) -> dict:
        return {"heads": {k: v.detach().clone() for k, v in self.heads.state_dict().items()},
                "pca_mean": torch.from_numpy(self.pca_mean.astype(np.float32)),
                "pca_components": torch.from_numpy(self.pca_components.astype(np.float32)),
                "a": float(self.a), "weights": dict(self.weights), "dup_threshold": float(self.dup_threshold),
                "anchor_text": torch.from_numpy(self.anchor_text.astype(np.float32)),
                "anchor_sem": torch.from_numpy(self.anchor_sem.astype(np.float32)),
                "anchor_temperature": float(self.anchor_temperature),
                "anchor_captions": list(self.anchor_captions),
                "other_text": torch.from_numpy(self.other_text.astype(np.float16)),
                "other_names": list(self.other_names), "off_topic_margin": float(self.off_topic_margin),
                "format": FORMAT} | ({"concepts": self.concepts.state()} if self.concepts is not None else {})

    def checkpoint(self, metrics: dict | None = None) -> Checkpoint:
        """This space in the common checkpoint format: the heads as the weights, the rest as extras."""
        state = self.state()
        return Checkpoint(scenario="retrieval", config=None, labels={}, vocab=[], metrics=metrics or {},
                          state_dict=state.pop("heads"), extra=state)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> Space:
        """The space a checkpoint of :meth:`checkpoint` holds."""
        return cls.from_state({**ckpt.extra, "heads": ckpt.state_dict})

    @classmethod
    def from_state(cls, state: dict) -> Space:
        if state.get("format") != FORMAT or "concepts" not in state:
            raise ValueError(f"not a retrieval checkpoint of this version (format {FORMAT}); retrain it with "
                             "python -m mbm.train --scenario retrieval (or add the open vocabulary to a "
                             "mbm-retrieval-4 one: python -m mbm.scenarios.retrieval.concepts CHECKPOINT, "
                             "after python -m tools.convert_retrieval_checkpoint CHECKPOINT)")
        heads = Heads()
        heads.load_state_dict(state["heads"])
        heads.eval()
        return cls(heads, state["pca_mean"].numpy(), state["pca_components"].numpy(), float(state["a"]),
                   dict(state["weights"]), state["anchor_text"].numpy(), state["anchor_sem"].numpy(),
                   float(state["anchor_temperature"]), tuple(state["anchor_captions"]),
                   state["other_text"].float().numpy(), tuple(state["other_names"]), float(state["off_topic_margin"]),
                   float(state["dup_threshold"]), Concepts.from_state(state["concepts"]))


def build_heads(config=None) -> Heads:
    """The network a retrieval checkpoint's weights belong to (its config is None: the shapes are fixed)."""
    return Heads()


def load_space(path=None) -> Space:
    """The search space of a retrieval checkpoint (default: the shipped one), loaded by :mod:`mbm.checkpoint`."""
    from mbm.paths import RETRIEVAL_CHECKPOINT

    return Space.from_checkpoint(load_checkpoint(path or RETRIEVAL_CHECKPOINT, "retrieval", build=build_heads))


def score_terms(vectors: np.ndarray, queries: dict[str, np.ndarray], weights: dict[str, float],
                negative: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-input terms w_m * sim(q_m, item) over all items (N,), the negative as a negative term."""
    terms = {m: float(weights.get(m, 0.0)) * (vectors @ q) for m, q in queries.items()}
    if negative is not None:
        terms["negative"] = -float(weights.get("negative", 0.0)) * (vectors @ negative)
    return terms


def combined_query(queries: dict[str, np.ndarray], weights: dict[str, float],
                   negative: np.ndarray | None = None) -> np.ndarray:
    """One vector q with item @ q == the summed score: what an approximate index searches with."""
    q = sum(float(weights.get(m, 0.0)) * v for m, v in queries.items())
    if negative is not None:
        q = q - float(weights.get("negative", 0.0)) * negative
    return np.asarray(q, np.float32)
