"""Accuracy and p(true action) of every input subset on the held-out triples, and by what the text names.

    PYTHONPATH=. python tools/experiments/text_scripts/confidence_by_subset.py CHECKPOINT DATA

Runs the voice-control evaluation (held-out split) up to the weights-vs-effects step and prints, for each
subset of inputs, the accuracy, the mean and median probability of the true action and the mean weights;
then p(true action) with all three inputs against speech + photo, by what the typed text names. It shows
whether adding an input makes the answer surer or less sure (the effects the weights are compared with).
"""

import sys

import torch

import mbm.scenarios.voice_control.faithfulness as faithfulness
from mbm.scenarios.voice_control.evaluate import main


class Captured(Exception):
    """Raised once the subsets' probabilities are in hand: the rest of the evaluation is not needed."""


def capture(out, probs, tri):
    raise Captured({"probs": {"+".join(k): v for k, v in probs.items()}, "truth": tri["truth"], "named": tri["named"]})


faithfulness._weight_vs_effect = capture
try:
    main(["--scenario", "voice_control", "--data", sys.argv[2], "--split", "heldout", "--checkpoint", sys.argv[1],
          "--json", "--threads", "1"])
    raise SystemExit("the evaluation ended before the weights-vs-effects step")
except Captured as done:
    d = done.args[0]
truth = d["truth"]
for name, (p, w) in d["probs"].items():
    p_true = p.gather(1, truth[:, None])[:, 0]
    print(f"{name:18s} accuracy {float((p.argmax(1) == truth).float().mean()):.3f}  p(true) mean "
          f"{float(p_true.mean()):.3f} median {float(p_true.median()):.3f}  weights {w.mean(0).numpy().round(3)}")
p3, p2 = (d["probs"][k][0].gather(1, truth[:, None])[:, 0] for k in ("audio+image+text", "audio+image"))
for group in ("device", "word", "both"):
    sel = torch.tensor([n == group for n in d["named"]])
    print(f"text names {group:6s} n {int(sel.sum()):3d}  p(true) all three {float(p3[sel].mean()):.3f}, "
          f"speech + photo {float(p2[sel].mean()):.3f}")
