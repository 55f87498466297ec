"""The fusion model: encoders + cross-modal attention fusion + classification heads."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from mbm.config import MODALITIES, ModelConfig
from mbm.encoders import AudioEncoder, ImageEncoder, TextEncoder, Tokens
from mbm.fusion import AttentionFusion


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

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        # Training only: run the encoders under CPU autocast in this dtype (e.g. torch.bfloat16);
        # their tokens come back as float32, so fusion, heads and losses stay in full precision.
        self.encoder_autocast: torch.dtype | None = None
        self.encoders = nn.ModuleDict({
            "audio": AudioEncoder(cfg.encoder, cfg.audio),
            "image": ImageEncoder(cfg.encoder, cfg.image),
            "text": TextEncoder(cfg.encoder),
        })
        self.fusion = AttentionFusion(self.modalities, cfg.encoder, cfg.fusion, n_heads=len(cfg.heads))
        d = cfg.encoder.dim
        self.heads = nn.ModuleDict({
            name: nn.Sequential(nn.LayerNorm(d), nn.Dropout(cfg.encoder.dropout), nn.Linear(d, n))
            for name, n in sorted(cfg.heads.items())
        })
        self.fusion.probe = self.head_probabilities  # for evidence pooling (mbm.fusion)

    def encode(self, inputs: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None,
               skip_absent: bool = False) -> dict[str, Tokens]:
        """Run the encoder of each given modality; ``present[m]`` (B,) marks the samples that have it.

        By default every encoder runs on every row and the absent rows are masked afterwards.
        ``skip_absent=True`` runs each encoder on its present rows only (absent rows get zero
        tokens with an all-False mask; a modality no sample has is left out): the same outputs
        in eval mode, less work, and in training the absent rows stay out of BatchNorm's batch
        statistics and out of the dropout random stream, so a seeded run differs.
        """
        unknown = set(inputs) - set(self.modalities)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; expected some of {self.modalities}")
        tokens: dict[str, Tokens] = {}
        for m in self.modalities:
            if m not in inputs:
                continue
            keep = None if present is None or m not in present else present[m].bool()
            if keep is None or bool(keep.all()) or not skip_absent:
                out = self._run_encoder(m, inputs[m])
                tokens[m] = out if keep is None else out.keep_rows(keep)  # (B, T_m)
                continue
            rows = torch.nonzero(keep).flatten()  # (K,) samples that have m
            if len(rows) == 0:  # no sample has it: left out, as an input never given
                continue
            out = self._run_encoder(m, inputs[m][rows])  # (K, T_m, D)
            batch_tokens = out.tokens.new_zeros(len(keep), *out.tokens.shape[1:])  # (B, T_m, D)
            batch_mask = out.mask.new_zeros(len(keep), out.mask.shape[1])  # (B, T_m)
            batch_tokens[rows], batch_mask[rows] = out.tokens, out.mask
            tokens[m] = Tokens(batch_tokens, batch_mask)
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
        return self.fusion(self.encode(inputs, present))

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
        f = self.fusion(tokens)
        return ModelOutput(self.forward_head(f.fused), f.modality_weights, f.token_weights, f.fused)
