"""How a text reaches the semantic space: the text head directly, or through the caption anchors.

    PYTHONPATH=. python tools/experiments/retrieval_scripts/text_anchors.py [DATA] [CHECKPOINT]

Scores text -> image mAP over the retrieval held-out photos of DATA/devices (default ../shared/data)
for the validation paraphrases (what the anchor temperature was chosen on) and, for reference, the
evaluation paraphrases. Each row: the head applied to the text, then anchors at several temperatures.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from mbm.scenarios.retrieval.data import device_photos, held_out, photo_features_cached
from mbm.scenarios.retrieval.encoders import text_features
from mbm.scenarios.retrieval.metrics import mean_ap
from mbm.scenarios.retrieval.model import load_space, text_input
from mbm.scenarios.retrieval.spec import CLASSES, EVAL_PARAPHRASES, VALIDATION_PARAPHRASES

TEMPERATURES = (0.01, 0.02, 0.03, 0.05, 0.1)


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data")
    space = load_space(Path(sys.argv[2]) if len(sys.argv) > 2 else None)
    items = [(p, c) for p, c in device_photos(data) if held_out(p.name) and c in CLASSES]
    pooled, probs, _ = photo_features_cached([p for p, _ in items])
    labels = np.array([CLASSES.index(c) for _, c in items])
    vectors = space.item_vectors(space.photo_sem(pooled, probs), space.appearance(pooled))
    print(f"{len(labels)} held-out photos; text -> image mAP")
    for name, queries in (("validation", VALIDATION_PARAPHRASES), ("evaluation", EVAL_PARAPHRASES)):
        texts = [t for c in CLASSES for t in queries[c]]
        q_labels = [CLASSES.index(c) for c in CLASSES for _ in queries[c]]
        minilm, conse = text_features(texts)
        with torch.inference_mode():
            head = space.heads.text_sem(text_input(minilm, conse)).numpy()
        row = [f"head {mean_ap(vectors, space.text_query(head), q_labels, labels)[0]:.3f}"]
        for t in TEMPERATURES:
            sem = dataclasses.replace(space, anchor_temperature=t).text_sem(minilm)
            row.append(f"T={t} {mean_ap(vectors, space.text_query(sem), q_labels, labels)[0]:.3f}")
        print(f"{name:>10}: " + "  ".join(row))


if __name__ == "__main__":
    main()
