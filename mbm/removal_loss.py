"""A training loss that ties the modality weights to each modality's measured effect.

Attention weights are not explanations by themselves: nothing in the task loss
makes the modality the prediction leans on also get the largest weight. This
loss asks for exactly what ``weight_effect_spearman`` measures (see
:mod:`mbm.faithfulness`): per sample, the modality whose removal hurts the
prediction most should carry the largest weight.

For each training sample with two or more modalities present, the fusion block
and heads are re-run (no gradient, dropout off) on the encoders' tokens with one
modality removed at a time, which gives ``s_m`` = log-odds of the true label
without m. Removing m hurts more than removing n when ``s_m < s_n`` (the
ordering of ``p(true | all) - p(true | without m)`` across m is the same). For every
such pair with a clear gap, a pairwise hinge loss pushes ``log w_m - log w_n``
above a margin; pairs already in order by the margin cost nothing, so the loss
leaves the weights alone where they are already faithful. A modality replaced by noise helps nothing,
so the loss also teaches the attention to look away from it.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from mbm.encoders import Tokens


def removal_rank_loss(model, tokens: dict[str, torch.Tensor | Tokens], modality_weights: torch.Tensor,
                      true_prob: Callable[[dict[str, torch.Tensor]], torch.Tensor],
                      margin: float = 0.5, min_gap: float = 0.1) -> torch.Tensor:
    """Pairwise hinge loss between modality weights and the effect of removing each modality.

    Args:
        model: a :class:`mbm.model.MultimodalModel` (its ``fusion`` and ``forward_head`` are used).
        tokens: modality -> Tokens from ``model.encode`` (masks already mark absent samples).
        modality_weights: (B, M) the weights of the full forward pass (with gradient).
        true_prob: head logits -> (B,) probability of each sample's true label.
        margin: wanted gap in log weight between a more and a less useful modality.
        min_gap: pairs whose log-odds without either modality differ by less are left out.

    Returns:
        A scalar: the mean over ranked pairs of ``relu(margin - (log w_m - log w_n))``; zero (with
        gradient) when no sample has a pair to rank.
    """
    modalities = model.fusion.modalities
    batch = modality_weights.shape[0]
    present = torch.zeros(batch, len(modalities), dtype=torch.bool)  # (B, M)
    for k, m in enumerate(modalities):
        if m in tokens:
            present[:, k] = tokens[m].mask.any(1)
    rankable = present.sum(1) >= 2  # (B,) samples with something to compare
    if not bool(rankable.any()):
        return modality_weights.sum() * 0.0

    detached = {m: Tokens(t.tokens.detach(), t.mask) for m, t in tokens.items()}
    log_odds_without = torch.full((batch, len(modalities)), float("inf"))  # (B, M), inf = not present
    training = model.training
    model.eval()  # the effect is measured without dropout, as at evaluation
    try:
        with torch.no_grad():
            for k, m in enumerate(modalities):
                if m not in detached:
                    continue
                # Remove m only where something else remains (the other samples are not ranked).
                drop = present[:, k] & rankable
                sel = dict(detached)
                sel[m] = detached[m].keep_rows(~drop)
                p = true_prob(model.forward_head(model.fusion(sel).fused)).clamp(1e-6, 1 - 1e-6)
                log_odds_without[:, k] = torch.where(present[:, k], p.log() - (-p).log1p(), log_odds_without[:, k])
    finally:
        model.train(training)

    # want[b, i, j]: removing i hurts clearly more than removing j, both present -> w_i should exceed w_j.
    s = log_odds_without
    want = (s[:, :, None] < s[:, None, :] - min_gap) & present[:, :, None] & present[:, None, :]
    want &= rankable[:, None, None]
    if not bool(want.any()):
        return modality_weights.sum() * 0.0
    log_w = modality_weights.clamp_min(1e-6).log()
    gap = log_w[:, :, None] - log_w[:, None, :]  # (B, M, M)
    return F.relu(margin - gap)[want].mean()
