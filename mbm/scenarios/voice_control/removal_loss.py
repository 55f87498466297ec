"""The training loss that ties the modality weights to each modality's measured effect.

Attention weights are not explanations by themselves: nothing in the task loss
makes the modality the prediction leans on also get the largest weight. For each
training sample with two or more modalities present, the fusion block and heads
are re-run (no gradient, dropout off) on the encoders' tokens with one modality
removed at a time (``true_prob_without_each``), which measures the drop in
p(true label) without each input. ``removal_effect_loss`` asks the weights to be
``softmax(drop / T)`` of those drops: what ``weight_effect_spearman`` measures (see
:mod:`mbm.scenarios.voice_control.faithfulness`). Other losses tried (a pairwise ranking hinge, a loss on the
weight of noised inputs) are in docs/history.md.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mbm.encoders import Tokens


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
            p_full = true_prob(model.forward_head(model.fuse(detached).fused))  # (B,)
            p_without = p_full[:, None].repeat(1, len(modalities))  # (B, M)
            for k, m in enumerate(modalities):
                drop = present[:, k] & rankable
                if m not in detached or not bool(drop.any()):
                    continue
                sel = dict(detached)
                sel[m] = detached[m].keep_rows(~drop)
                p = true_prob(model.forward_head(model.fuse(sel).fused))
                p_without[:, k] = torch.where(drop, p, p_without[:, k])
    finally:
        model.train(training)
    return present, rankable, p_full, p_without
