"""The portrait fusion model: the shared :class:`mbm.model.MultimodalModel` with feature encoders.

Each modality arrives as a pretrained embedding (face: dlib 128-d; voice:
Resemblyzer 256-d; profile: hashed bag of words 256-d) plus a few match
statistics against the gallery (best calibrated similarity, margin to the second
best, a quality cue). A small :class:`FeatureEncoder` turns that vector into one
token, and the shared model's encoders for image/audio/text are replaced by these,
so the shared cross-modal attention fusion (``mbm.fusion.AttentionFusion``) weighs
the modalities: its modality weights (face=image, voice=audio, profile=text; sum
to 1, absent = 0) are the output shown to the user.

Identity embedding and recognition: per modality m the similarity to a person's
prototype is calibrated, ``z_m = a_m * (cos_m - b_m)`` (learned scalars), and the
fused score is ``s = sum_m w_m z_m`` over the modalities the person has — the dot
product of the identity embedding ``concat_m(w_m * a_m * x_m)`` with the person's
prototype ``concat_m(p_m)`` minus the offsets. ``s < threshold`` -> "unknown".
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from mbm.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mbm.config import MODALITIES, EncoderConfig, FusionConfig, ModelConfig
from mbm.encoders import Tokens
from mbm.features.face import FACE_DIM
from mbm.features.voice import VOICE_DIM
from mbm.model import MultimodalModel
from mbm.scenarios.portrait.features import PROFILE_DIM

N_STATS = 3  # best calibrated similarity, margin to the second best, a quality cue
FEATURE_DIMS = {"image": FACE_DIM + N_STATS, "audio": VOICE_DIM + N_STATS, "text": PROFILE_DIM + N_STATS}


class FeatureEncoder(nn.Module):
    """A feature vector (B, F) -> one token (B, 1, D); stands in for a raw-input encoder."""

    def __init__(self, in_dim: int, dim: int, dropout: float):
        super().__init__()
        self.in_dim = in_dim
        self.net = nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> Tokens:
        assert x.shape[-1] == self.in_dim, f"expected {self.in_dim} features, got {x.shape[-1]}"
        t = self.net(x)[:, None]  # (B, 1, D)
        return Tokens(t, torch.ones(t.shape[:2], dtype=torch.bool, device=t.device))


class PortraitOutput(NamedTuple):
    scores: torch.Tensor  # (B, P) fused similarity to each gallery person
    modality_weights: torch.Tensor  # (B, 3) in MODALITIES order (audio=voice, image=face, text=profile)
    z: torch.Tensor  # (B, P, 3) calibrated per-modality similarities


def default_config(dim: int = 32) -> ModelConfig:
    return ModelConfig(heads={}, encoder=EncoderConfig(dim=dim, dropout=0.1),
                       fusion=FusionConfig(heads=2, pooling="tokens", ffn_mult=2, dropout=0.1))


class PortraitModel(nn.Module):
    """Shared MultimodalModel (feature encoders in) + per-modality score calibration."""

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        self.cfg = cfg or default_config()
        d, p = self.cfg.encoder.dim, self.cfg.encoder.dropout
        self.backbone = MultimodalModel(self.cfg, {m: FeatureEncoder(FEATURE_DIMS[m], d, p) for m in MODALITIES})
        # z_m = scale_m * (cos_m - offset_m); initial values put same/different people around +-1.
        self.offset = nn.Parameter(torch.tensor([0.75, 0.90, 0.30]))  # audio, image, text
        self.log_scale = nn.Parameter(torch.log(torch.tensor([12.0, 30.0, 4.0])))
        self.register_buffer("threshold", torch.tensor(0.0))

    def calibrate(self, cos: torch.Tensor) -> torch.Tensor:
        """(..., 3) cosine similarities -> calibrated z."""
        return self.log_scale.exp() * (cos - self.offset)

    def forward(self, feats: dict[str, torch.Tensor], cos: torch.Tensor, available: torch.Tensor,
                present: dict[str, torch.Tensor] | None = None) -> PortraitOutput:
        """Fuse.

        Args:
            feats: modality -> (B, FEATURE_DIMS[m]) features of the given modalities.
            cos: (B, P, 3) cosine similarity of the query to each person's prototype per modality.
            available: (P, 3) bool, which modalities each gallery person has.
            present: optional modality -> (B,) bool, per-sample presence (for mixed batches).
        """
        f = self.backbone.forward_features(feats, present)
        w = f.modality_weights  # (B, 3), rows sum to 1, absent = 0
        z = self.calibrate(cos)  # (B, P, 3)
        wp = w[:, None, :] * available[None].float()  # (B, P, 3) only modalities the person has
        norm = wp.sum(-1).clamp_min(1e-6)
        scores = (wp * z).sum(-1) / norm  # (B, P)
        # A person with none of the query's modalities scores far below any threshold.
        scores = torch.where(wp.sum(-1) > 0, scores, torch.full_like(scores, -1e4))
        return PortraitOutput(scores, w, z)


def save_portrait_model(model: PortraitModel, path: str | Path, extra: dict | None = None) -> None:
    """Atomic write of config + weights + threshold (+ extras: metrics, split), as every mbm checkpoint."""
    save_checkpoint(Checkpoint(scenario="portrait", config=model.cfg, labels={}, vocab=[], extra=extra or {},
                               state_dict=model.state_dict()), path)


def load_portrait_model(path: str | Path) -> tuple[PortraitModel, dict]:
    """(model in eval mode, extra); ValueError naming the file when it is unusable."""
    ckpt = load_checkpoint(path, "portrait", build=PortraitModel)
    return ckpt.build_model(PortraitModel), ckpt.extra
