"""The tiny scenario's network: the shared MultimodalModel with one linear token per input."""

from __future__ import annotations

import torch
from torch import nn

from mbm.config import EncoderConfig, FusionConfig, ModelConfig
from mbm.encoders import Tokens
from mbm.model import MultimodalModel
from tests.tiny_scenario.spec import INPUTS, LABELS, WIDTH


class VectorEncoder(nn.Module):
    """(B, 8) numbers -> one token (B, 1, D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Linear(WIDTH, dim)

    def forward(self, x: torch.Tensor) -> Tokens:
        t = self.net(x)[:, None]
        return Tokens(t, torch.ones(t.shape[:2], dtype=torch.bool))


def model_config(dim: int = 16) -> ModelConfig:
    """One head over the labels; token pooling (each input is one token)."""
    return ModelConfig(heads={"label": len(LABELS)}, encoder=EncoderConfig(dim=dim, dropout=0.0),
                       fusion=FusionConfig(pooling="tokens", dropout=0.0))


def build_model(cfg: ModelConfig) -> MultimodalModel:
    """The network a tiny checkpoint's weights belong to."""
    return MultimodalModel(cfg, encoders={m: VectorEncoder(cfg.encoder.dim) for m in INPUTS})
