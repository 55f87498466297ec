"""Accuracy and p(true action) of every input subset on the held-out triples, and the deletion check's drops.

    PYTHONPATH=. python tools/experiments/text_scripts/confidence_by_subset.py CHECKPOINT DATA [--cut-text]

Runs the voice-control evaluation (held-out split) up to the deletion check and prints, for each subset of
inputs, the accuracy, the mean and median probability of the true action and the mean weights; then
p(true action) with all three inputs against speech + photo, by what the typed text names; then, per input,
the mean p(answer) lost when the fifth of its units a map ranks highest (attention, occlusion) or a random
fifth is masked (the numbers ``map_deletion_ratio`` divides). It shows whether adding an input makes the
answer surer or less sure, and the weights-vs-effects Spearman. ``--cut-text``: the speech and photo tokens
may not attend to the text's in the cross-modal attention (a test of whether the text acts through it). A
checkpoint whose text is read by MiniLM needs the code of commit be6dbbb.
"""

import sys

import torch

from mbm.fusion import AttentionFusion
from mbm.scenarios.voice_control import faithfulness, maps
from mbm.scenarios.voice_control.evaluate import main


class Captured(Exception):
    """Raised once the deletion drops are in hand: the rest of the evaluation is not needed."""


def print_subsets(probs: dict, tri: dict) -> None:
    truth = tri["truth"]
    for subset, (p, w) in probs.items():
        p_true = p.gather(1, truth[:, None])[:, 0]
        print(f"{'+'.join(subset):18s} accuracy {float((p.argmax(1) == truth).float().mean()):.3f}  p(true) mean "
              f"{float(p_true.mean()):.3f} median {float(p_true.median()):.3f}  weights {w.mean(0).numpy().round(3)}")
    p3, p2 = (probs[k][0].gather(1, truth[:, None])[:, 0] for k in (("audio", "image", "text"), ("audio", "image")))
    for group in ("device", "word", "both"):
        sel = torch.tensor([n == group for n in tri["named"]])
        print(f"text names {group:6s} n {int(sel.sum()):3d}  p(true) all three {float(p3[sel].mean()):.3f}, "
              f"speech + photo {float(p2[sel].mean()):.3f}")


def print_deletion_drops(model, index, samples) -> None:
    for m, by_kind in deletion_ratios(model, index, samples)["mean_drop"].items():
        print(f"deletion, {m}: mean p(answer) lost " + ", ".join(f"{k} {v:.4f}" for k, v in by_kind.items()))
    raise Captured


def attend_text_apart(self, inputs):
    """``AttentionFusion._attend`` with the speech and photo tokens kept from attending to the text tokens: the
    cross-attention's padding mask is replaced by a (B * heads, T, T) mask that also blocks those pairs."""
    present = [m for m in self.modalities if m in inputs]
    if "text" not in present or len(present) < 2:
        return attend(self, inputs)
    mask = torch.cat([inputs[m].mask for m in present], dim=1)  # (B, T) True = real token
    is_text = torch.cat([torch.full((inputs[m].tokens.shape[1],), m == "text") for m in present])  # (T,)
    allowed = mask[:, None, :] & ~((~is_text)[None, :, None] & is_text[None, None, :])  # (B, T query, T key)
    allowed = torch.where(allowed.any(-1, keepdim=True), allowed, mask[:, None, :])  # never an empty row
    blocked = (~allowed).repeat_interleave(self.cross.num_heads, 0)
    hook = self.cross.register_forward_pre_hook(
        lambda module, args, kwargs: (args, {**kwargs, "key_padding_mask": None, "attn_mask": blocked}),
        with_kwargs=True)
    try:
        return attend(self, inputs)
    finally:
        hook.remove()


def subsets_and_spearman(out, probs, tri):
    print_subsets(probs, tri)
    weight_vs_effect(out, probs, tri)
    print(f"weights vs effects, Spearman {out['weight_effect_spearman']}")


attend, weight_vs_effect, deletion_ratios = AttentionFusion._attend, faithfulness._weight_vs_effect, maps.deletion_ratios
if "--cut-text" in sys.argv[3:]:
    AttentionFusion._attend = attend_text_apart
faithfulness._weight_vs_effect = subsets_and_spearman
maps.deletion_ratios = print_deletion_drops
try:
    main(["--scenario", "voice_control", "--data", sys.argv[2], "--split", "heldout", "--checkpoint", sys.argv[1],
          "--json", "--threads", "2"])
    raise SystemExit("the evaluation ended before the deletion check")
except Captured:
    pass
