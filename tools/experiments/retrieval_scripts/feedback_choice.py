"""Choose the search's second pass (``feedback_k``, ``feedback_weight``) on validation material only.

    PYTHONPATH=. python tools/experiments/retrieval_scripts/feedback_choice.py ../shared/data [--grid K:W,K:W,...]

One collection: the device *validation* photos (the fifth of the training photos the retrieval heads never
fitted) + every ``not_devices`` photo, searched as the app searches it (``evaluate.text_score_matrix``).
Queries: the 28 device ``VALIDATION_PARAPHRASES`` (relevant: that device class), ``validation_queries.json``
(48, one relevant photo each) and ``validation_superclasses.json`` (26, a broader kind: many relevant photos),
and the mixed queries of the device validation photos (photo of one device + a text naming another, R@1).
Prints one line per setting; never reads ``collections/everyday``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--grid", default="0:0,3:0.5,5:0.5,5:1,10:0.5,10:1,10:2,20:1")
    args = ap.parse_args()
    import torch

    from mbm.scenarios.retrieval.data import device_photos, held_out, photo_features_cached, source_of
    from mbm.scenarios.retrieval.encoders import text_vectors
    from mbm.scenarios.retrieval.evaluate import memory_index, photo_score_matrix, text_score_matrix
    from mbm.scenarios.retrieval.metrics import average_precision, mixed_r1
    from mbm.scenarios.retrieval.model import load_space
    from mbm.scenarios.retrieval.spec import CLASSES, MIXED_TEXTS, VALIDATION_PARAPHRASES
    from mbm.scenarios.retrieval.train import validation_photo

    torch.set_num_threads(2)
    space = load_space()
    dev = [(p, c) for p, c in device_photos(args.data) if c in CLASSES and not held_out(p.name)
           and validation_photo(p.name)]
    wnids = sorted(p.name.split("_")[0] for p in (args.data / "not_devices").glob("n*.jpg"))
    nd = sorted((args.data / "not_devices").glob("n*.jpg"))
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    wnid_index = {info.index_to_label_name(i): i for i in range(1000)}
    nd_class = np.array([wnid_index[p.name.split("_")[0]] for p in nd])
    paths = [p for p, _ in dev] + nd
    pooled, probs, errors = photo_features_cached(paths, progress=True)
    assert not errors, errors
    n_dev = len(dev)
    dev_labels = np.array([CLASSES.index(c) for _, c in dev])
    index = memory_index(space, pooled, probs)

    queries = []  # (group, text, relevant (N,) bool)
    for c, ts in VALIDATION_PARAPHRASES.items():
        rel = np.r_[dev_labels == CLASSES.index(c), np.zeros(len(nd), bool)]
        queries += [("device", t, rel) for t in ts]
    names = ["_".join(p.stem.split("_")[1:]) for p in nd]
    for key, ts in json.loads((HERE / "validation_queries.json").read_text()).items():
        if key.startswith("_"):
            continue
        rel = np.r_[np.zeros(n_dev, bool), np.array([n == key for n in names])]
        assert rel.sum() == 1, key
        queries += [("single", t, rel) for t in ts]
    for key, spec in json.loads((HERE / "validation_superclasses.json").read_text()).items():
        if key.startswith("_"):
            continue
        member = np.zeros(len(nd), bool)
        for a, b in spec["ranges"]:
            member |= (nd_class >= a) & (nd_class <= b)
        rel = np.r_[np.zeros(n_dev, bool), member]
        queries += [("kind", t, rel) for t in spec["queries"]]
    print(f"{len(wnids)} not_devices, {n_dev} device validation photos, {len(queries)} queries", flush=True)

    dev_index = memory_index(space, pooled[:n_dev], probs[:n_dev])
    ps = photo_score_matrix(space, dev_index, probs[:n_dev])
    mixed_sem = space.text_sem(text_vectors([MIXED_TEXTS[c] for c in CLASSES]))
    sources = [source_of(p.name) for p, _ in dev]
    for setting in args.grid.split(","):
        k, w = setting.split(":")
        space.concepts.constants.update(feedback_k=int(k), feedback_weight=float(w))
        t0 = time.time()
        s = text_score_matrix(space, index, [t for _, t, _ in queries])
        aps = {}
        for (g, _, rel), row in zip(queries, s):
            aps.setdefault(g, []).append(average_precision(row, rel))
        mt = text_score_matrix(space, dev_index, [MIXED_TEXTS[c] for c in CLASSES]).T
        m = mixed_r1(space, dev_index.vectors, dev_index.photo_sem, dev_index.app, dev_labels, sources, mixed_sem,
                     space.weights, limit=1000, photo_scores=ps, text_scores=mt)
        allq = [a for v in aps.values() for a in v]
        print(f"k {k:>2} w {w:>4}: mAP all {np.mean(allq):.3f} | " + " ".join(
            f"{g} {np.mean(v):.3f}" for g, v in aps.items()) + f" | mixed R@1 {m['mixed']:.3f} "
            f"(text alone {m['text']:.3f}) | {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
