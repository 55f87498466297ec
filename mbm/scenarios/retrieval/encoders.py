"""The frozen encoders of retrieval: photo, text, speech (what was said) and their raw features.

- photo: EfficientNet-Lite0 (ImageNet, ``mbm.features.efficientnet``) at 224 px: the head's 1280-channel
  grid averaged (1280) and the ImageNet class probabilities (1000).
- text: all-MiniLM-L6-v2 (``mbm.features.minilm``, 384). A query is searched with its MiniLM
  vector alone (through the caption anchors, ``mbm.scenarios.retrieval.model.Space.text_sem``); in
  training the text head also gets a ConSE bridge: the text's similarity to the 1000 ImageNet class
  names (timm's ``ImageNetInfo``, the first synonym of each), softmax-sharpened (Norouzi et al. 2014).
- speech: PocketSphinx (``mbm.scenarios.retrieval.speech``: no torch, so the processes that hear spoken
  queries and voice notes stay small); the transcript is then a text query. Who spoke is Resemblyzer
  (``mbm.features.voice``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from mbm.errors import InputError
from mbm.features import efficientnet as _efficientnet

IMAGE_SIZE = 224
IMAGE_DIM = 1280  # EfficientNet-Lite0's pooled head features
# Names the photo features: part of every cached feature file's key (mbm.scenarios.retrieval.data), so
# features of another backbone, weight file or size are never reused.
PHOTO_BACKBONE = f"{_efficientnet.BACKBONE}/sha256:{_efficientnet.SHA256[:16]}/{IMAGE_SIZE}px/mean+softmax"
N_CLASSES = 1000
TEXT_DIM = 384
CONSE_TEMPERATURE = 0.05


def imagenet_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in the classifier's order (timm's public ``ImageNetInfo``)."""
    from mbm.features.efficientnet import imagenet_names as names

    return names()


def load_photo(source) -> np.ndarray:
    """A path / bytes / PIL / array -> (224, 224, 3) uint8 RGB (shorter side resized, centre crop)."""
    from PIL import Image

    from mbm.config import ImageConfig
    from mbm.preprocess import read_image

    img = read_image(source, ImageConfig(size=IMAGE_SIZE))
    w, h = img.size
    if min(w, h) < 8:
        raise InputError(f"the photo is only {w}x{h} pixels")
    s = min(w, h)
    box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
    return np.asarray(img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR, box=box,
                                 reducing_gap=2.0), dtype=np.uint8)


@torch.inference_mode()
def photo_features(photos: list[np.ndarray], batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(N, 224, 224, 3) uint8 -> (pooled EfficientNet-Lite0 head (N, 1280), ImageNet probabilities (N, 1000)),
    float32. The input goes in channels-last memory: 36 against 59 ms a photo in batches of 32 on one
    thread, on the one shared network (a channels-last copy of it is no faster)."""
    from mbm.features.efficientnet import features, pretrained_efficientnet, uint8_to_input

    net = pretrained_efficientnet()
    pooled, probs = [], []
    for s in range(0, len(photos), batch):
        x = uint8_to_input(torch.from_numpy(np.stack(photos[s:s + batch])).permute(0, 3, 1, 2))
        feats, logits = features(net, x.contiguous(memory_format=torch.channels_last))
        pooled.append(feats.float().numpy())
        probs.append(logits.float().softmax(1).numpy())
    if not pooled:
        return np.zeros((0, IMAGE_DIM), np.float32), np.zeros((0, N_CLASSES), np.float32)
    return np.concatenate(pooled), np.concatenate(probs)


@lru_cache(maxsize=1)
def class_name_vectors() -> np.ndarray:
    """Unit MiniLM vectors (1000, 384) of "a photo of a <ImageNet class name>" (ConSE; the off-topic check)."""
    from mbm.features.minilm import text_encoder

    return text_encoder().encode([f"a photo of a {n}" for n in imagenet_names()])


def text_vectors(texts: list[str]) -> np.ndarray:
    """Texts -> unit MiniLM vectors (N, 384): what a text query or caption is searched with."""
    from mbm.features.minilm import text_encoder

    return text_encoder().encode(list(texts)) if texts else np.zeros((0, TEXT_DIM), np.float32)


def text_features(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (MiniLM (N, 384), ConSE class distribution (N, 1000)): the text head's input in training."""
    v = text_vectors(texts)
    if not len(v):
        return v, np.zeros((0, N_CLASSES), np.float32)
    sims = torch.from_numpy(v @ class_name_vectors().T)
    return v, (sims / CONSE_TEMPERATURE).softmax(1).numpy()


def text_language_note(text: str) -> str | None:
    """A note when a text is mostly outside the English model's reach (another script, unknown words)."""
    from mbm.features.minilm import text_encoder

    letters = [c for c in text if c.isalpha()]
    if letters and sum(ord(c) > 0x24F for c in letters) / len(letters) > 0.5:
        return ("this text is mostly in a non-Latin script; the text model was trained on English, "
                "so it may match poorly")
    if text_encoder().unknown_share(text) > 0.5:
        return "most words of this text are unknown to the English text model; it may match poorly"
    return None
