"""The portrait scenario's per-modality features: the face (dlib, :mod:`mbm.features.face`), the voice
(Resemblyzer's speaker encoder, :mod:`mbm.features.voice`), and here the profile text: a hashed bag of words
(no training; any words work).

All models load from the installed packages; nothing is downloaded.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mbm.preprocess import tokenize

PROFILE_DIM = 256

# --- Profile text ----------------------------------------------------------------------------------

STOPWORDS = frozenset(["a", "an", "the", "and", "or", "with", "in", "at", "of", "to", "is", "are", "has", "have", "who", "works", "speaks", "for", "on", "he", "she", "they", "their", "his", "her"])


def profile_words(text: str | None) -> list[str]:
    return [w for w in tokenize(text or "") if w not in STOPWORDS]


def embed_profile(text: str | None) -> np.ndarray | None:
    """Hashed bag of content words -> (256,) L2-normalised vector; None when no words."""
    words = profile_words(text)
    if not words:
        return None
    v = np.zeros(PROFILE_DIM, np.float32)
    for w in words:
        v[int(hashlib.md5(w.encode()).hexdigest(), 16) % PROFILE_DIM] += 1.0
    return v / np.linalg.norm(v)
