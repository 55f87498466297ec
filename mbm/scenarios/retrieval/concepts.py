"""Open vocabulary: what a typed or spoken text can reach beyond the seven device classes.

The photo network already knows 1000 ImageNet concepts and MiniLM already reads free text, so a text
is matched against

- the **concepts**: each ImageNet class's names ("wallaby", "brush kangaroo") and its WordNet gloss
  (timm's public ``ImageNetInfo``), read with MiniLM. A text's similarity to a class is its best cosine
  to one of the class's texts; a softmax over the 1000 classes (temperature ``temperature``) is the
  text's concept distribution pi. An item's score is sum_c p_c(photo) * pi_c (ConSE, Norouzi et al.
  2014), p the photo's ImageNet probabilities (its ``TOP_K`` largest, stored in the index);
- the item's own **texts**: its caption and voice-note transcript, and the words of its file and folder
  names (MiniLM cosines, counted above a floor, ``text_floor``).

A photo query is compared with an item on the same concepts as well: the Bhattacharyya coefficient
sum_c sqrt(p_c(query) p_c(item)) of their ImageNet probabilities, so photos of anything the network
knows find each other, not only the seven devices.

A text is *off topic* when its best cosine to every concept text, device caption and item text of the
collection is below ``off_topic_floor``; the flag then names the nearest of them.

The section is stored in the retrieval checkpoint (format ``mbm-retrieval-5``); adding it to a trained
checkpoint changes nothing else (``python -m mbm.scenarios.retrieval.concepts CHECKPOINT``).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

TOP_K = 16  # an item keeps its 16 largest ImageNet probabilities (the rest hold ~1-3 % of the mass)
# Words of file names that say nothing about the photo (cameras' and phones' prefixes).
NAME_NOISE = frozenset(("img", "image", "dsc", "dscn", "dscf", "pxl", "photo", "pic", "picture", "screenshot",
                        "scan", "copy", "edited", "final", "jpg", "jpeg", "png", "mvimg", "wp", "gopr", "sam"))
# Defaults, replaced by the values chosen on validation material (the choice table in docs/retrieval.md, "Open vocabulary").
# temperature, concept_weight, gate_*: chosen on validation material (docs/retrieval.md).
DEFAULTS = {"temperature": 0.05, "concept_weight": 0.5, "concept_power": 1.0, "concept_gated": 1.0,
            "gate_width": 0.05, "gate_offset": -0.05, "text_weight": 1.0, "text_floor": 0.3,
            "photo_concept_weight": 0.25, "photo_gate_mass": 0.02, "off_topic_floor": 0.41}


def concept_texts() -> tuple[list[str], np.ndarray]:
    """Each ImageNet class's texts: "a photo of a <name>" for every synonym, and "<names>: <gloss>";
    (texts, their class index (T,))."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    texts, cls = [], []
    for c in range(1000):
        names = [s.strip() for s in info.index_to_description(c, detailed=False).split(",") if s.strip()]
        for n in dict.fromkeys(names):
            texts.append(f"a photo of a {n}")
            cls.append(c)
        texts.append(info.index_to_description(c, detailed=True))
        cls.append(c)
    return texts, np.asarray(cls, np.int16)


def name_words(path: str) -> str:
    """The words of an item's file and folder names ("Kangaroo_photos/IMG_2031 hopping.jpg" -> "kangaroo photos
    hopping"); camera prefixes and numbers dropped; "" when nothing is left."""
    if not Path(path).name:
        return ""
    parts = Path(path).with_suffix("").parts[-2:]
    words = []
    for part in parts:
        part = re.sub(r"([a-z])([A-Z])", r"\1 \2", part)
        words += [w for w in re.split(r"[^A-Za-z]+", part.lower()) if len(w) > 1 and w not in NAME_NOISE]
    return " ".join(dict.fromkeys(words))


def top_concepts(probs: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """ImageNet probabilities (N, 1000) -> (class ids (N, k) int16, probabilities (N, k) float32), largest first."""
    probs = np.asarray(probs, np.float32)
    if not len(probs):
        return np.zeros((0, k), np.int16), np.zeros((0, k), np.float32)
    ids = np.argsort(-probs, axis=1)[:, :k]
    return ids.astype(np.int16), np.take_along_axis(probs, ids, 1).astype(np.float32)


@dataclass
class Match:
    """Why an item matched a text: the concept that carried most of the concept score (its name, the
    photo's probability, the text's share), and the item text that matched (and its cosine)."""

    concept: str | None = None
    photo_p: float = 0.0
    text_share: float = 0.0
    item_text: str | None = None
    item_text_cos: float = 0.0


@dataclass
class Concepts:
    """The 1000 ImageNet concepts as MiniLM reads them, and the open-vocabulary constants."""

    names: tuple[str, ...]  # (1000,) the first synonym of each class
    texts: tuple[str, ...]  # (T,) the concept texts
    text_vectors: np.ndarray  # (T, 384) unit MiniLM vectors
    text_class: np.ndarray  # (T,) class of each text
    constants: dict = field(default_factory=lambda: dict(DEFAULTS))

    def __post_init__(self):
        order = np.argsort(self.text_class, kind="stable")
        self._order = order
        self._starts = np.flatnonzero(np.r_[True, np.diff(self.text_class[order]) != 0])

    def __getattr__(self, key):  # the constants as attributes (concept_weight, temperature, ...)
        c = self.__dict__.get("constants")
        if c is not None and key in c:
            return c[key]
        raise AttributeError(key)

    def class_similarity(self, minilm: np.ndarray) -> np.ndarray:
        """Unit MiniLM vectors (N, 384) -> (N, 1000): the best cosine to each class's texts."""
        s = np.asarray(minilm, np.float32) @ self.text_vectors.T
        return np.maximum.reduceat(s[:, self._order], self._starts, axis=1)

    def distribution(self, minilm: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """Unit MiniLM vectors (N, 384) -> the texts' concept distributions pi (N, 1000)."""
        t = self.temperature if temperature is None else temperature
        return torch.from_numpy(self.class_similarity(minilm) / t).softmax(-1).numpy()

    def nearest(self, minilm: np.ndarray) -> tuple[float, str]:
        """One unit MiniLM vector -> (best cosine to a concept text, that text's class name)."""
        s = self.text_vectors @ np.asarray(minilm, np.float32)
        j = int(np.argmax(s))
        return float(s[j]), self.names[int(self.text_class[j])]

    def state(self) -> dict:
        return {"names": list(self.names), "texts": list(self.texts),
                "text_vectors": torch.from_numpy(self.text_vectors.astype(np.float16)),
                "text_class": torch.from_numpy(self.text_class.astype(np.int16)),
                "constants": {k: float(v) for k, v in self.constants.items()}}

    @classmethod
    def from_state(cls, s: dict) -> Concepts:
        return cls(tuple(s["names"]), tuple(s["texts"]), s["text_vectors"].float().numpy(),
                   s["text_class"].numpy().astype(np.int64), dict(DEFAULTS) | dict(s["constants"]))

    @classmethod
    def build(cls, constants: dict | None = None) -> Concepts:
        """Encode the concept texts (about a minute on one thread); float16 as the checkpoint stores them."""
        from mbm.scenarios.retrieval.encoders import imagenet_names, text_vectors

        texts, cls_ = concept_texts()
        v = text_vectors(texts).astype(np.float16).astype(np.float32)
        return cls(imagenet_names(), tuple(texts), v, cls_.astype(np.int64), dict(DEFAULTS) | dict(constants or {}))


    def text_gate(self, minilm: np.ndarray, caption_vectors: np.ndarray) -> np.ndarray:
        """Unit MiniLM vectors (N, 384) -> (N,) how much the device reading counts (0..1): a sigmoid of the
        best cosine to a device caption minus the best to an ImageNet concept ("a telly" ~0.8, "a kangaroo" ~0)."""
        d = (np.asarray(minilm, np.float32) @ caption_vectors.T).max(1) - self.class_similarity(minilm).max(1)
        return (1 / (1 + np.exp(-(d - self.gate_offset) / self.gate_width))).astype(np.float32)

    def photo_gate(self, probs: np.ndarray) -> np.ndarray:
        """ImageNet probabilities (N, 1000) -> (N,) how much the device head counts for a photo query (0..1):
        the probability mass on the device classes over ``photo_gate_mass`` (1 from there up)."""
        from mbm.features.imagenet_devices import mapping_matrix

        mass = (np.asarray(probs, np.float32) @ mapping_matrix().numpy()).sum(1)
        return np.clip(mass / self.photo_gate_mass, 0, 1).astype(np.float32)


# --- scores over an index's items ------------------------------------------------------------------

def concept_scores(pi: np.ndarray, ids: np.ndarray, p: np.ndarray) -> np.ndarray:
    """A text's concept distribution pi (1000,) against items' top concepts -> (N,) sum_c p_c pi_c."""
    return (p * pi[ids.astype(np.int64)]).sum(1)


def photo_concept_scores(q_probs: np.ndarray, ids: np.ndarray, p: np.ndarray) -> np.ndarray:
    """A photo's ImageNet probabilities (1000,) against items' top concepts -> (N,) Bhattacharyya
    coefficients sum_c sqrt(p_c(query) p_c(item)) (1 for the same distribution)."""
    return (np.sqrt(np.clip(p, 0, None)) * np.sqrt(np.clip(q_probs, 0, None))[ids.astype(np.int64)]).sum(1)


def text_match_scores(minilm: np.ndarray, vectors: np.ndarray, mask: np.ndarray, floor: float) -> np.ndarray:
    """A text (384,) against items' texts (N, 384; ``mask`` where present) -> (N,) max(0, cos - floor)."""
    s = vectors @ np.asarray(minilm, np.float32)
    return np.where(mask, np.clip(s - floor, 0, None), 0.0).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mbm.scenarios.retrieval.concepts",
                                 description="Add the open-vocabulary section to a trained retrieval checkpoint "
                                             "(of the older layout: first python -m tools.convert_retrieval_checkpoint).")
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="constants (else the defaults)")
    args = ap.parse_args(argv)
    from mbm.checkpoint import load_checkpoint, save_checkpoint
    from mbm.scenarios.retrieval.model import FORMAT, build_heads

    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint, "retrieval", build=build_heads)
    state = ckpt.extra
    old = dict(state.get("concepts", {}).get("constants", {}))
    for kv in args.set:
        k, v = kv.split("=", 1)
        if k not in DEFAULTS:
            raise SystemExit(f"unknown constant {k}; known: {', '.join(DEFAULTS)}")
        old[k] = float(v)
    if "concepts" in state and not args.set:
        print("the checkpoint already has its concepts; pass --set to change constants")
        return 0
    concepts = (Concepts.from_state(state["concepts"]) if "concepts" in state else Concepts.build())
    concepts.constants = dict(DEFAULTS) | old
    state["concepts"] = concepts.state()
    state["format"] = FORMAT
    save_checkpoint(ckpt, args.checkpoint)
    print(f"wrote {args.checkpoint} ({args.checkpoint.stat().st_size / 1e6:.2f} MB): {len(concepts.texts)} concept "
          f"texts; constants {concepts.constants}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
