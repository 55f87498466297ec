"""Training losses that tie the modality weights to each modality's measured effect.

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
so the loss also teaches the attention to look away from it (``removal_rank_loss``).

``removal_effect_loss`` asks for the same with one listwise target per sample: the
weights should be ``softmax(drop / T)`` of the measured drops in p(true). Both use
``true_prob_without_each`` for the measurement.

``noised_input_weight_loss`` needs no measurement: an input that training replaced by
noise (labels unchanged) carries nothing, so its weight should be near 0. The task loss
alone lets the fusion ignore such an input through its values while still weighing it;
this loss asks the weight itself to say so.
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
    present, rankable, p_full, p_without = true_prob_without_each(model, tokens, true_prob)
    if not bool(rankable.any()):
        return modality_weights.sum() * 0.0
    p = p_without.clamp(1e-6, 1 - 1e-6)
    log_odds_without = torch.where(present, p.log() - (-p).log1p(), torch.full_like(p, float("inf")))  # (B, M)

    # want[b, i, j]: removing i hurts clearly more than removing j, both present -> w_i should exceed w_j.
    s = log_odds_without
    want = (s[:, :, None] < s[:, None, :] - min_gap) & present[:, :, None] & present[:, None, :]
    want &= rankable[:, None, None]
    if not bool(want.any()):
        return modality_weights.sum() * 0.0
    log_w = modality_weights.clamp_min(1e-6).log()
    gap = log_w[:, :, None] - log_w[:, None, :]  # (B, M, M)
    return F.relu(margin - gap)[want].mean()


def removal_effect_loss(model, tokens: dict[str, Tokens], modality_weights: torch.Tensor,
                        true_prob: Callable[[dict[str, torch.Tensor]], torch.Tensor],
                        temperature: float = 0.2) -> torch.Tensor:
    """Listwise loss: the modality weights should match softmax(effect / temperature).

    The effect of modality m is ``d_m = p(true | all present) - p(true | all but m)``, the
    drop that ``weight_effect_spearman`` compares the weights with. Per sample with two or
    more modalities present, the target is ``q = softmax(d / temperature)`` over the present
    ones, and the loss is the cross-entropy ``-sum_m q_m log w_m`` (lowest when w = q).

    Returns:
        A scalar: the mean over samples with something to rank; zero (with gradient) when none.
    """
    present, rankable, p_full, p_without = true_prob_without_each(model, tokens, true_prob)
    if not bool(rankable.any()):
        return modality_weights.sum() * 0.0
    effect = (p_full[:, None] - p_without) / temperature  # (B, M)
    target = effect.masked_fill(~present, float("-inf")).softmax(1)  # (B, M), 0 where absent
    log_w = modality_weights.clamp_min(1e-6).log()
    return -(target * log_w).sum(1)[rankable].mean()


def noised_input_weight_loss(modality_weights: torch.Tensor, noised: dict[str, torch.Tensor],
                             modalities: tuple[str, ...]) -> torch.Tensor:
    """Mean modality weight of the inputs that were replaced by noise; 0 when none were.

    Args:
        modality_weights: (B, M) fusion weights, in ``modalities`` order.
        noised: modality -> (B,) bool, True where that input is present but is noise.
    """
    mask = torch.stack([noised[m] for m in modalities], 1)  # (B, M)
    if not mask.any():
        return modality_weights.sum() * 0.0  # keeps the graph (and the dtype) for the caller's sum
    return modality_weights[mask].mean()


def true_prob_without_each(model, tokens: dict[str, Tokens],
                           true_prob: Callable[[dict[str, torch.Tensor]], torch.Tensor]):
    """p(true) with every present modality and with each one removed, measured as at evaluation.

    The fusion block and heads are re-run without gradient and with dropout off on the
    encoders' tokens. A modality is removed only from samples where something else remains.

    Returns:
        ``(present (B, M) bool, rankable (B,) bool: two or more present, p_full (B,),
        p_without (B, M): p(true) without m; p_full where m is absent or the sample not rankable)``.
    """
    modalities = model.fusion.modalities
    batch = next(iter(tokens.values())).mask.shape[0]
    present = torch.zeros(batch, len(modalities), dtype=torch.bool)  # (B, M)
    for k, m in enumerate(modalities):
        if m in tokens:
            present[:, k] = tokens[m].mask.any(1)
    rankable = present.sum(1) >= 2  # (B,) samples with something to compare
    detached = {m: Tokens(t.tokens.detach(), t.mask) for m, t in tokens.items()}
    training = model.training
    model.eval()  # the effect is measured without dropout, as at evaluation
    try:
        with torch.no_grad():
            p_full = true_prob(model.forward_head(model.fusion(detached).fused))  # (B,)
            p_without = p_full[:, None].repeat(1, len(modalities))  # (B, M)
            for k, m in enumerate(modalities):
                drop = present[:, k] & rankable
                if m not in detached or not bool(drop.any()):
                    continue
                sel = dict(detached)
                sel[m] = detached[m].keep_rows(~drop)
                p = true_prob(model.forward_head(model.fusion(sel).fused))
                p_without[:, k] = torch.where(drop, p, p_without[:, k])
    finally:
        model.train(training)
    return present, rankable, p_full, p_without
