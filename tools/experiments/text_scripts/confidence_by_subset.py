"""Accuracy and p(true action) of every input subset on the held-out triples, and the deletion check's drops.

    PYTHONPATH=. python tools/experiments/text_scripts/confidence_by_subset.py CHECKPOINT DATA

Runs the voice-control evaluation (held-out split) up to the deletion check and prints, for each subset of
inputs, the accuracy, the mean and median probability of the true action and the mean weights; then
p(true action) with all three inputs against speech + photo, by what the typed text names; then, per input,
the mean p(answer) lost when the fifth of its units a map ranks highest (attention, occlusion) or a random
fifth is masked (the numbers ``map_deletion_ratio`` divides). It shows whether adding an input makes the
answer surer or less sure. A checkpoint whose text is read by MiniLM needs the code of commit be6dbbb.
"""

import sys

import numpy as np
import torch

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
    model.eval()
    generator, drops = torch.Generator().manual_seed(0), {}
    for sample in samples:
        for m, info in maps.explain_sample(model, index, sample, generator).items():
            for kind, d in info["drop"].items():
                drops.setdefault(m, {}).setdefault(kind, []).append(d)
    for m, by_kind in drops.items():
        print(f"deletion, {m}: mean p(answer) lost " + ", ".join(f"{k} {np.mean(v):.4f}" for k, v in by_kind.items()))
    raise Captured


weight_vs_effect = faithfulness._weight_vs_effect
faithfulness._weight_vs_effect = lambda out, probs, tri: (print_subsets(probs, tri), weight_vs_effect(out, probs, tri))
maps.deletion_ratios = print_deletion_drops
try:
    main(["--scenario", "voice_control", "--data", sys.argv[2], "--split", "heldout", "--checkpoint", sys.argv[1],
          "--json", "--threads", "2"])
    raise SystemExit("the evaluation ended before the deletion check")
except Captured:
    pass
