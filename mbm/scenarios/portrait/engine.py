"""Queries + gallery -> the fusion model's inputs, and batched identification.

Shared by training, evaluation and the predictor so all three score people the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mbm.config import MODALITIES
from mbm.features.face import FACE_DIM
from mbm.features.voice import VOICE_DIM
from mbm.scenarios.portrait.features import PROFILE_DIM
from mbm.scenarios.portrait.gallery import Gallery
from mbm.scenarios.portrait.model import PortraitModel, PortraitOutput

A, I, T = MODALITIES.index("audio"), MODALITIES.index("image"), MODALITIES.index("text")


@dataclass
class GalleryTensors:
    names: list[str]
    protos: dict[str, torch.Tensor]  # modality -> (P, dim) unit prototypes (zeros where missing)
    available: torch.Tensor  # (P, 3) bool


def gallery_tensors(gallery: Gallery) -> GalleryTensors:
    """The gallery's stacked prototypes; profile embeddings come from each person's cache (computed once
    at enrol or load, never per request), and the result is kept on the gallery until it changes."""
    cached = gallery.__dict__.get("_tensors")
    if cached is not None and cached[0] == gallery.version:
        return cached[1]
    mats = gallery.matrices()
    prof = [p.profile_embedding() for p in gallery.people.values()]
    text = np.stack([p if p is not None else np.zeros(PROFILE_DIM, np.float32) for p in prof]) \
        if prof else np.zeros((0, PROFILE_DIM), np.float32)
    available = np.stack([mats["has_voice"], np.ones(len(prof), bool),
                          np.array([p is not None for p in prof], bool)], 1) if prof else np.zeros((0, 3), bool)
    tensors = GalleryTensors(gallery.names(), {"audio": torch.from_numpy(mats["voice"]).float(),
                                               "image": torch.from_numpy(mats["face"]).float(),
                                               "text": torch.from_numpy(text).float()},
                             torch.from_numpy(available))
    gallery.__dict__["_tensors"] = (gallery.version, tensors)
    return tensors


@dataclass
class Queries:
    """A batch of B queries; a modality is None (absent for all) or given with a per-sample mask."""

    face: torch.Tensor | None = None  # (B, 128) unit
    face_quality: torch.Tensor | None = None  # (B,) e.g. sharpness / 10 (detector miss -> lower)
    voice: torch.Tensor | None = None  # (B, 256) unit
    profile: torch.Tensor | None = None  # (B, 256) unit
    present: dict[str, torch.Tensor] | None = None  # modality -> (B,) bool; None = all given are present

    def batch(self) -> int:
        for x in (self.face, self.voice, self.profile):
            if x is not None:
                return x.shape[0]
        raise ValueError("give at least one of face, voice or profile")


def _stats(z: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """(B, P) calibrated similarities, (P,) availability -> (B, 2): best, margin to second best."""
    zz = z.masked_fill(~avail[None], -10.0).clamp(-10, 10)
    k = min(2, zz.shape[1])
    top = zz.topk(k, dim=1).values
    second = top[:, 1] if k == 2 else torch.full_like(top[:, 0], -10.0)
    return torch.stack([top[:, 0] / 5, (top[:, 0] - second) / 5], 1)


def fuse(model: PortraitModel, q: Queries, g: GalleryTensors) -> PortraitOutput:
    """Score every query against every gallery person."""
    b, p = q.batch(), len(g.names)
    cos = torch.zeros(b, p, 3)
    feats: dict[str, torch.Tensor] = {}
    given = {"audio": q.voice, "image": q.face, "text": q.profile}
    for m, x in given.items():
        if x is None:
            continue
        j = MODALITIES.index(m)
        cos[:, :, j] = x @ g.protos[m].T  # (B, P)
        z = model.calibrate(cos)[:, :, j].detach() if p else torch.zeros(b, 0)
        stats = _stats(z, g.available[:, j]) if p else torch.zeros(b, 2)
        quality = q.face_quality[:, None] if (m == "image" and q.face_quality is not None) else \
            torch.ones(b, 1)
        feats[m] = torch.cat([x, stats, quality], 1)
    return model(feats, cos, g.available, q.present)


def prototypes_from(embeddings: np.ndarray) -> np.ndarray:
    v = np.asarray(embeddings, np.float32).mean(0)
    return v / max(float(np.linalg.norm(v)), 1e-8)


__all__ = ["FACE_DIM", "VOICE_DIM", "GalleryTensors", "Queries", "fuse", "gallery_tensors", "prototypes_from"]
