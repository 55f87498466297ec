"""Cross-modal attention and attention-weighted fusion (steps 3 and 4 of the source document).

All modalities' tokens are concatenated into one sequence. A cross-modal
attention layer lets every token attend to the tokens of every present modality
(how the modalities and the tokens inside them relate). A learned query then
pools the tokens, in one of two ways (``FusionConfig.pooling``):

``"tokens"`` (one softmax over every present token):

    fused = sum_t w_t * v_t,   w = softmax over every present token
    modality weight(m) = sum of w_t over the tokens of m   (sums to 1; absent -> exactly 0)
    token weights(m)   = w_t / modality weight(m)          (where inside the modality)

``"modality"`` (pool inside each modality, then weigh the modalities):

    token weights(m) = softmax over the tokens of m;  v_m = sum_t token weight_t * v_t
    modality weights = softmax over the present modalities of score(v_m)   (absent -> exactly 0)
    fused = sum_m modality weight(m) * v_m

The second makes a modality's weight a judgement of its pooled content, not of how
many tokens it has (a long text of unknown words would otherwise outweigh a clip).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from mbm.config import EncoderConfig, FusionConfig
from mbm.encoders import Tokens


class FusionOutput(NamedTuple):
    fused: torch.Tensor  # (B, D) the attention-weighted representation
    modality_weights: torch.Tensor  # (B, M) per modality, rows sum to 1, absent modality = 0
    token_weights: dict[str, torch.Tensor]  # modality -> (B, T_m), each row sums to 1 (0 if absent)


class AttentionFusion(nn.Module):
    """Cross-modal attention layer + single-query attention pooling that keeps its weights."""

    def __init__(self, modalities: tuple[str, ...], enc: EncoderConfig, cfg: FusionConfig):
        super().__init__()
        self.modalities = tuple(modalities)
        d = enc.dim
        self.modality_embed = nn.Parameter(torch.zeros(len(modalities), d))
        nn.init.normal_(self.modality_embed, std=0.02)
        self.norm1 = nn.LayerNorm(d)
        self.cross = nn.MultiheadAttention(d, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn_mult * d), nn.GELU(), nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.ffn_mult * d, d))
        self.norm3 = nn.LayerNorm(d)
        self.query = nn.Parameter(torch.zeros(d))
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.scale = d ** -0.5
        self.pooling = cfg.pooling
        if cfg.pooling == "modality":
            self.modality_score = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 1))  # pooled v_m -> score
        elif cfg.pooling != "tokens":
            raise ValueError(f"unknown fusion pooling {cfg.pooling!r}; expected 'tokens' or 'modality'")

    def forward(self, inputs: dict[str, Tokens]) -> FusionOutput:
        """Fuse the encoders' outputs.

        Args:
            inputs: modality -> Tokens; a missing key or a fully masked row is an absent modality.
        """
        present = [m for m in self.modalities if m in inputs]
        assert present, "at least one modality must be given"
        x = torch.cat([inputs[m].tokens + self.modality_embed[self.modalities.index(m)] for m in present], 1)
        mask = torch.cat([inputs[m].mask for m in present], dim=1)  # (B, T) True = real token
        assert bool(mask.any(1).all()), "every sample needs at least one present modality"
        lengths = [inputs[m].tokens.shape[1] for m in present]

        # Cross-modal attention: each token attends to every present token of every modality.
        h = self.norm1(x)
        attended, _ = self.cross(h, h, h, key_padding_mask=~mask, need_weights=False)
        x = x + attended  # (B, T, D)
        x = x + self.ffn(self.norm2(x))
        h = self.norm3(x)

        # Attention pooling with one learned query: the weights are the explanation.
        scores = (self.key(h) @ self.query) * self.scale  # (B, T)
        values = self.value(h)  # (B, T, D)
        if self.pooling == "modality":
            return self._pool_per_modality(scores, values, mask, present, lengths)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=1)  # (B, T), rows sum to 1
        fused = torch.einsum("bt,btd->bd", weights, values)  # (B, D)

        batch = x.shape[0]
        modality_weights = x.new_zeros(batch, len(self.modalities))
        token_weights: dict[str, torch.Tensor] = {}
        for m, part in zip(present, weights.split(lengths, dim=1)):
            mass = part.sum(1)  # (B,)
            modality_weights[:, self.modalities.index(m)] = mass
            token_weights[m] = part / mass.clamp_min(1e-12)[:, None]  # (B, T_m)
        return FusionOutput(fused, modality_weights, token_weights)

    def _pool_per_modality(self, scores, values, mask, present, lengths) -> FusionOutput:
        """Softmax inside each modality, then a softmax over the present modalities' pooled vectors."""
        batch = scores.shape[0]
        pooled, has, token_weights = [], [], {}
        for m, s, v, k in zip(present, scores.split(lengths, 1), values.split(lengths, 1), mask.split(lengths, 1)):
            any_token = k.any(1)  # (B,) False: m absent for this sample
            # rows without tokens get finite scores (then zero weights) so the softmax stays NaN-free
            w = s.masked_fill(~k, float("-inf")).masked_fill(~any_token[:, None], 0.0).softmax(1)
            w = w * any_token[:, None]  # (B, T_m), rows sum to 1 (0 if absent)
            token_weights[m] = w
            pooled.append(torch.einsum("bt,btd->bd", w, v))  # (B, D)
            has.append(any_token)
        pooled_all = torch.stack(pooled, 1)  # (B, P, D), P = present modalities
        mod_scores = self.modality_score(pooled_all).squeeze(-1)  # (B, P)
        mod_w = mod_scores.masked_fill(~torch.stack(has, 1), float("-inf")).softmax(1)  # (B, P)
        fused = torch.einsum("bp,bpd->bd", mod_w, pooled_all)  # (B, D)
        modality_weights = scores.new_zeros(batch, len(self.modalities))
        for j, m in enumerate(present):
            modality_weights[:, self.modalities.index(m)] = mod_w[:, j]
        return FusionOutput(fused, modality_weights, token_weights)
