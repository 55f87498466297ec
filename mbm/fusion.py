"""Cross-modal attention and attention-weighted fusion.

All modalities' tokens are concatenated into one sequence. A cross-modal
attention layer lets every token attend to the tokens of every present modality
(how the modalities and the tokens inside them relate). A learned query then
pools the tokens, in one of two ways (``FusionConfig.pooling``; each is used by a shipped model):

``"tokens"`` (one softmax over every present token; portrait):

    fused = sum_t w_t * v_t,   w = softmax over every present token
    modality weight(m) = sum of w_t over the tokens of m   (sums to 1; absent -> exactly 0)
    token weights(m)   = w_t / modality weight(m)          (where inside the modality)

``"evidence"`` (pool inside each modality, then weigh the modalities by measured evidence; voice control):

    token weights(m) = softmax over the tokens of m;  v_m = sum_t token weight_t * v_t
    base       = heads(mean of the present v_m)                 (no gradient)
    base_-m    = heads(mean of v_n over the present n != m)     (with ``evidence_reattend``: the
                 cross-modal attention re-run without m, the exact leave-one-out)
    evidence_m = per head, base[top class] - base_-m[top class]  (how much the quick prediction
                 loses without m; 0 when m is the only input)
    joint_m    = prod_h base_h[top class] - prod_h base_-m,h[top class]   (what the quick
                 prediction's whole answer, every head's top class at once, loses without m)
    scores = gate([evidence_m and presence for every modality]) + evidence_gain * joint_m
    modality weights = softmax over the present modalities of scores   (absent -> exactly 0)
    fused = sum_m modality weight(m) * v_m

Pooling inside each modality makes a modality's weight a judgement of its content, not of
how many tokens it has (a long text of unknown words would otherwise outweigh a clip). The
gate reads what removing each input does to the answer, so the weights follow the measured
effects; the gain adds the whole answer's loss directly, and the learned gate shapes the rest.
Other poolings were tried and removed: see docs/history.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from mbm.config import EncoderConfig, FusionConfig
from mbm.encoders import Tokens

STACKED_EVIDENCE_MAX_ROWS = 64  # exact evidence at inference: stack the leave-one-out passes up to this many rows


Probe = Callable[[torch.Tensor], dict[str, torch.Tensor]]  # fused (N, D) -> head -> probabilities (N, C)


class FusionOutput(NamedTuple):
    fused: torch.Tensor  # (B, D) the attention-weighted representation
    modality_weights: torch.Tensor  # (B, M) per modality, rows sum to 1, absent modality = 0
    token_weights: dict[str, torch.Tensor]  # modality -> (B, T_m), each row sums to 1 (0 if absent)


class Evidence(NamedTuple):
    """What the quick prediction loses without each present modality (see the module docstring)."""

    per_head: torch.Tensor  # (B, P, H): each head's top-class probability lost
    joint: torch.Tensor  # (B, P): the whole answer's loss, prod_h p_h(top class) with m minus without m


class AttentionFusion(nn.Module):
    """Cross-modal attention layer + single-query attention pooling that keeps its weights."""

    def __init__(self, modalities: tuple[str, ...], enc: EncoderConfig, cfg: FusionConfig, n_heads: int = 0):
        """``n_heads``: number of classification heads (the evidence gate gets one number per head)."""
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
        self.key = nn.Linear(d, d, bias=False)  # a bias would shift every score alike: softmax ignores it
        self.value = nn.Linear(d, d)
        self.scale = d ** -0.5
        cfg.validate()
        self.pooling = cfg.pooling
        self.reattend = cfg.evidence_reattend
        self.evidence_gain = cfg.evidence_gain
        if cfg.pooling == "evidence":
            if not n_heads:
                raise ValueError("evidence pooling needs the number of heads")
            m, self.n_evidence = len(modalities), n_heads  # one evidence number per head
            # every modality's evidence (zeros if absent) + presence flags -> a score each
            self.modality_gate = nn.Sequential(nn.Linear(m * (n_heads + 1), d), nn.GELU(), nn.Linear(d, m))

    def forward(self, inputs: dict[str, Tokens], probe: Probe | None = None) -> FusionOutput:
        """Fuse the encoders' outputs.

        Args:
            inputs: modality -> Tokens; a missing key or a fully masked row is an absent modality.
            probe: evidence pooling only: fused (N, D) -> {head: class probabilities (N, C)}, the
                model's heads without dropout (the quick prediction that measures the evidence).
        """
        if self.pooling == "tokens":
            return self._pool_tokens(*self._attend(inputs))
        assert probe is not None, "evidence pooling needs the model's heads as a probe"
        pooled, has, token_weights, present = self._pool_inside_modalities(*self._attend(inputs))
        evidence = self._evidence(pooled, has, inputs, present, probe)
        return self._weigh_modalities(pooled, has, token_weights, present, evidence)

    def _attend(self, inputs: dict[str, Tokens]):
        """Cross-modal attention -> (pooling scores (B, T), values (B, T, D), mask (B, T), present, lengths)."""
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
        return scores, values, mask, present, lengths

    def _pool_tokens(self, scores, values, mask, present, lengths) -> FusionOutput:
        """One softmax over every present token; a modality's weight is its tokens' share."""
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=1)  # (B, T), rows sum to 1
        fused = torch.einsum("bt,btd->bd", weights, values)  # (B, D)

        batch = scores.shape[0]
        modality_weights = scores.new_zeros(batch, len(self.modalities))
        token_weights: dict[str, torch.Tensor] = {}
        for m, part in zip(present, weights.split(lengths, dim=1)):
            mass = part.sum(1)  # (B,)
            modality_weights[:, self.modalities.index(m)] = mass
            token_weights[m] = part / mass.clamp_min(1e-12)[:, None]  # (B, T_m)
        return FusionOutput(fused, modality_weights, token_weights)

    def _pool_inside_modalities(self, scores, values, mask, present, lengths):
        """Softmax inside each modality -> (pooled v_m (B, P, D), has (B, P), token weights, present)."""
        pooled, has, token_weights = [], [], {}
        for m, s, v, k in zip(present, scores.split(lengths, 1), values.split(lengths, 1), mask.split(lengths, 1)):
            any_token = k.any(1)  # (B,) False: m absent for this sample
            # rows without tokens get finite scores (then zero weights) so the softmax stays NaN-free
            w = s.masked_fill(~k, float("-inf")).masked_fill(~any_token[:, None], 0.0).softmax(1)
            w = w * any_token[:, None]  # (B, T_m), rows sum to 1 (0 if absent)
            token_weights[m] = w
            pooled.append(torch.einsum("bt,btd->bd", w, v))  # (B, D)
            has.append(any_token)
        return torch.stack(pooled, 1), torch.stack(has, 1), token_weights, present  # P = present modalities

    def _weigh_modalities(self, pooled_all, has, token_weights, present, evidence: Evidence) -> FusionOutput:
        """A softmax over the present modalities' gate scores -> the fused vector (B, D) and weights."""
        batch = pooled_all.shape[0]
        mod_scores = self._gate_scores(has, present, evidence)  # (B, P)
        mod_w = mod_scores.masked_fill(~has, float("-inf")).softmax(1)  # (B, P)
        fused = torch.einsum("bp,bpd->bd", mod_w, pooled_all)  # (B, D)
        modality_weights = pooled_all.new_zeros(batch, len(self.modalities))
        for j, m in enumerate(present):
            modality_weights[:, self.modalities.index(m)] = mod_w[:, j]
        return FusionOutput(fused, modality_weights, token_weights)

    def _gate_scores(self, has: torch.Tensor, present: list[str], evidence: Evidence) -> torch.Tensor:
        """(B, P) which rows have each present modality, its evidence -> (B, P) scores."""
        batch = has.shape[0]
        slots = has.new_zeros(batch, len(self.modalities), self.n_evidence, dtype=evidence.per_head.dtype)  # (B, M, H)
        flags = slots.new_zeros(batch, len(self.modalities))  # (B, M), 0 if absent
        cols = [self.modalities.index(m) for m in present]
        slots[:, cols] = evidence.per_head * has[:, :, None]
        flags[:, cols] = has.to(slots.dtype)
        scores = self.modality_gate(torch.cat([slots.flatten(1), flags], 1))[:, cols]  # (B, P)
        if self.evidence_gain:
            scores = scores + self.evidence_gain * evidence.joint
        return scores

    @torch.no_grad()
    def _evidence(self, pooled: torch.Tensor, has: torch.Tensor, inputs: dict[str, Tokens],
                  present: list[str], probe: Probe) -> Evidence:
        """Per present modality: what the quick prediction's top classes lose without it (``Evidence``).

        The quick prediction is the heads on the plain mean of the pooled vectors (B, P, D);
        "without m" leaves v_m out of that mean (where something else remains; 0 where m is
        the only input or absent). The cross-modal attention is not re-run, so what m passed
        to the other modalities' vectors stays in: a cheap, partial measurement. With
        ``FusionConfig.evidence_reattend`` the attention over ``inputs`` (the present modalities
        ``present``) is re-run without m instead: the exact leave-one-out, one more pass per modality.
        """
        def quick(pooled_: torch.Tensor, has_: torch.Tensor) -> dict[str, torch.Tensor]:
            mean = (pooled_ * has_[:, :, None]).sum(1) / has_.sum(1, keepdim=True).clamp_min(1)  # (B, D)
            return probe(mean)

        full = quick(pooled, has)
        heads = sorted(full)
        top = {h: full[h].argmax(1, keepdim=True) for h in heads}  # (B, 1) per head

        def top_probs(probs: dict[str, torch.Tensor]) -> torch.Tensor:  # (B, H): each head's top class
            return torch.stack([probs[h].gather(1, top[h])[:, 0] for h in heads], 1)

        full_top = top_probs(full)
        evidence = pooled.new_zeros(*has.shape, len(heads))  # (B, P, H)
        joint = pooled.new_zeros(has.shape)  # (B, P)
        batch, n_present = has.shape
        others_of = [torch.cat([has[:, :j], has[:, j + 1:]], 1).any(1) for j in range(n_present)]  # (B,) each
        stacked_rest = None
        if self.reattend and not self.training and batch * n_present <= STACKED_EVIDENCE_MAX_ROWS:
            # Small inference batches (the app's batch of 1) run all P leave-one-out passes as one
            # batch of P copies: one call instead of P, where the per-call overhead dominates. Large
            # batches are faster one pass per input, and training keeps that loop so that its dropout
            # draws, and with them seeded runs, stay as they were.
            stacked = {}
            for m, t in inputs.items():
                keep = torch.ones(n_present, batch, dtype=torch.bool, device=t.mask.device)  # (P, B)
                if m in present:
                    j = present.index(m)
                    keep[j] = ~others_of[j]  # copy j: m removed wherever something remains
                stacked[m] = Tokens(t.tokens.repeat(n_present, 1, 1), t.mask.repeat(n_present, 1)).keep_rows(keep.flatten())
            pooled_w, has_w, _, _ = self._pool_inside_modalities(*self._attend(stacked))  # (P * B, ...)
            stacked_rest = quick(pooled_w, has_w)  # head -> (P * B, C), copy j = without present[j]
        for j in range(n_present):
            others = others_of[j]  # (B,) something left without m
            if not bool(others.any()):
                continue
            if stacked_rest is not None:
                rest = {h: x[j * batch:(j + 1) * batch] for h, x in stacked_rest.items()}
            elif self.reattend:  # the exact leave-one-out: attention re-run without m
                m = present[j]
                without = {**inputs, m: inputs[m].keep_rows(~others)}  # m removed wherever something remains
                pooled_w, has_w, _, _ = self._pool_inside_modalities(*self._attend(without))
                rest = quick(pooled_w, has_w)
            else:
                has_without = has.clone()
                has_without[:, j] &= ~others  # v_m left out of the mean wherever something else remains
                rest = quick(pooled, has_without)
            rest_top = top_probs(rest)
            measured = (others & has[:, j]).to(pooled.dtype)  # (B,) 0 where m is absent or alone
            evidence[:, j] = (full_top - rest_top) * measured[:, None]
            joint[:, j] = (full_top.prod(1) - rest_top.prod(1)) * measured
        return Evidence(evidence, joint)
