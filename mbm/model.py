"""The fusion model: encoders + cross-modal attention fusion + classification heads."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from mbm.config import MODALITIES, ModelConfig
from mbm.encoders import AudioEncoder, ImageEncoder, TextEncoder, Tokens
from mbm.fusion import AttentionFusion


def image_encoder(cfg: ModelConfig) -> nn.Module:
    """The image encoder the config names: the from-scratch CNN or the pretrained EfficientNet-Lite0."""
    if cfg.encoder.image_backbone == "cnn":
        return ImageEncoder(cfg.encoder, cfg.image)
    if cfg.encoder.image_backbone == "efficientnet_lite0":
        from mbm.features.image_encoder import PretrainedImageEncoder

        return PretrainedImageEncoder(cfg.encoder, cfg.image)
    raise ValueError(f"unknown image backbone {cfg.encoder.image_backbone!r}; expected cnn or efficientnet_lite0")


class ModelOutput(NamedTuple):
    logits: dict[str, torch.Tensor]  # head name -> (B, classes)
    modality_weights: torch.Tensor  # (B, M) in MODALITIES order; rows sum to 1, absent = 0
    token_weights: dict[str, torch.Tensor]  # present modality -> (B, T_m), where inside it the model looked
    fused: torch.Tensor  # (B, D)


class MultimodalModel(nn.Module):
    """Image CNN, text GRU and audio CNN+GRU feeding one attention fusion block.

    Inputs are passed as a dict ``{"audio": (B, n_mels, F), "image": (B, 3, S, S),
    "text": (B, L) ids}``; any subset may be given. ``present`` optionally marks,
    per sample, which of the given modalities to use (modality dropout, or one
    batch holding several input subsets).
    """

    modalities = MODALITIES

    def __init__(self, cfg: ModelConfig, encoders: dict[str, nn.Module] | None = None):
        """``encoders``: modality -> module returning Tokens; default: the raw-input encoders below."""
        super().__init__()
        self.cfg = cfg
        # Training only: run the encoders under CPU autocast in this dtype (e.g. torch.bfloat16);
        # their tokens come back as float32, so fusion, heads and losses stay in full precision.
        self.encoder_autocast: torch.dtype | None = None
        self.encoders = nn.ModuleDict(encoders if encoders is not None else {
            "audio": AudioEncoder(cfg.encoder, cfg.audio),
            "image": image_encoder(cfg),
            "text": TextEncoder(cfg.encoder),
        })
        self.fusion = AttentionFusion(self.modalities, cfg.encoder, cfg.fusion, n_heads=len(cfg.heads))
        d = cfg.encoder.dim
        self.heads = nn.ModuleDict({
            name: nn.Sequential(nn.LayerNorm(d), nn.Dropout(cfg.encoder.dropout), nn.Linear(d, n))
            for name, n in sorted(cfg.heads.items())
        })

    def encode(self, inputs: dict[str, torch.Tensor],
               present: dict[str, torch.Tensor] | None = None) -> dict[str, Tokens]:
        """Run the encoder of each given modality; ``present[m]`` (B,) marks the samples that have it.

        Every encoder runs on every row of its input; the absent rows are masked afterwards.
        """
        unknown = set(inputs) - set(self.modalities)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; expected some of {self.modalities}")
        tokens: dict[str, Tokens] = {}
        for m in self.modalities:
            if m not in inputs:
                continue
            out = self._run_encoder(m, inputs[m])  # (B, T_m, D)
            tokens[m] = out if present is None or m not in present else out.keep_rows(present[m].bool())
        return tokens

    def _run_encoder(self, modality: str, x: torch.Tensor) -> Tokens:
        """One encoder's tokens, float32 even when it ran under autocast (``encoder_autocast``)."""
        if self.encoder_autocast is None:
            return self.encoders[modality](x)
        with torch.autocast(x.device.type, dtype=self.encoder_autocast):
            out = self.encoders[modality](x)
        return Tokens(out.tokens.float(), out.mask)

    def forward_features(self, inputs: dict[str, torch.Tensor],
                         present: dict[str, torch.Tensor] | None = None):
        """Encode the given modalities and fuse them; returns the FusionOutput."""
        return self.fuse(self.encode(inputs, present))

    def fuse(self, tokens: dict[str, Tokens]):
        """The fusion block over encoded tokens (the heads serve as the evidence probe); a FusionOutput."""
        return self.fusion(tokens, probe=self.head_probabilities)

    def forward_head(self, fused: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(fused) for name, head in self.heads.items()}

    def head_probabilities(self, fused: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each head's class probabilities for (N, D) fused vectors, without dropout (used as a probe)."""
        out = {}
        for name, head in self.heads.items():
            x = fused
            for layer in head:
                if not isinstance(layer, nn.Dropout):
                    x = layer(x)
            out[name] = x.softmax(-1)
        return out

    def forward(self, inputs: dict[str, torch.Tensor],
                present: dict[str, torch.Tensor] | None = None) -> ModelOutput:
        f = self.forward_features(inputs, present)
        return ModelOutput(self.forward_head(f.fused), f.modality_weights, f.token_weights, f.fused)

    def forward_subsets(self, inputs: dict[str, torch.Tensor], subsets: list[tuple[str, ...]]) -> ModelOutput:
        """One sample (batch 1) under several modality subsets, one output row per subset.

        Each encoder runs once; its tokens are repeated for every row and masked out of the
        rows whose subset leaves that modality out, so only fusion and heads run per row.
        """
        n = len(subsets)
        tokens = {}
        for m, enc in self.encode(inputs).items():  # (1, T_m, D) each
            keep = torch.tensor([m in s for s in subsets])  # (n,)
            tokens[m] = Tokens(enc.tokens.expand(n, -1, -1), enc.mask.expand(n, -1)).keep_rows(keep)
        f = self.fuse(tokens)
        return ModelOutput(self.forward_head(f.fused), f.modality_weights, f.token_weights, f.fused)
