"""Choose the EfficientNet-Lite0 input size and whether to fine-tune its top, on a validation split.

    PYTHONPATH=. python tools/experiments/real_photos_scripts/lite0_choice.py DATA SIZE [SIZE ...]

The voice-control training photos (the held-out fifth and the kept-apart sources never enter) are
split again by file-name hash: a fifth is the validation split, the rest trains. For each size:
the zero-shot top (ImageNet classes -> devices) and the top fine-tuned as the recipe does (stage 6 + head, 600 steps, distillation 1.0), each on two cached
views (plain + one augmented) of the fitting photos; prints validation accuracy overall and by source,
and the network's forward time for one photo on one thread (median of 20).
"""

import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from mbm.config import ImageConfig
from mbm.data.readers import _hash, list_device_photos, split_photos
from mbm.features import efficientnet
from mbm.features.device_top import DeviceTop, fine_tune
from mbm.paths import CACHE
from mbm.preprocess import normalise_pixels
from mbm.scenarios.voice_control.data import kept_apart, load_photo_pool
from mbm.scenarios.voice_control.image_cache import (
    DISTILL,
    TOP_BATCH,
    TOP_LR,
    TOP_STEPS,
    centre_views,
    photo_views,
    trunk_outputs,
)

data = Path(sys.argv[1])
train = kept_apart(split_photos(list_device_photos(data))[0])[0]
val = [p for p in train if _hash(f"val/{p.path.name}") % 5 == 0]
fit = [p for p in train if _hash(f"val/{p.path.name}") % 5 != 0]


def accuracy(pred, pool):
    by = defaultdict(list)
    for p, y, s in zip(pred.tolist(), pool.devices.tolist(), pool.sources):
        by[s].append(p == y)
    return round(float((pred == pool.devices).float().mean()), 4), {s: round(sum(v) / len(v), 3) for s, v in by.items()}


for size in map(int, sys.argv[2:]):
    cfg = ImageConfig(size=size)
    pool, val_pool = load_photo_pool(fit, cfg), load_photo_pool(val, cfg)
    views = photo_views(pool, [p.path.name for p in fit], size, 2, 0, CACHE)
    val_views = trunk_outputs(lambda a, b, px=val_pool.pixels, s=size: normalise_pixels(centre_views(px[a:b], s)),
                              len(val))
    tuned = fine_tune(DeviceTop(), views["trunk"], views["teacher"], pool.devices, TOP_STEPS, TOP_LR, TOP_BATCH,
                      DISTILL, 0)
    tops = {"zero-shot": DeviceTop().eval(), "fine-tuned": tuned}
    net = efficientnet.pretrained_efficientnet()
    x = efficientnet.to_input(torch.rand(1, 3, size, size) - 0.5)
    torch.set_num_threads(1)
    times = []
    with torch.no_grad():
        for _ in range(25):
            t = time.perf_counter()
            efficientnet.features(net, x)
            times.append(time.perf_counter() - t)
    torch.set_num_threads(2)
    for name, top in tops.items():
        with torch.no_grad():
            pred = top(val_views["trunk"].float())["device"].argmax(1)
        acc, by = accuracy(pred, val_pool)
        print(json.dumps({"size": size, "top": name, "validation": acc, "n": len(val), "by_source": by,
                          "forward_ms_one_thread": round(1000 * statistics.median(times[5:]), 1)}), flush=True)
