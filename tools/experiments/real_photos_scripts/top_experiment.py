"""Fine-tune the image top alone and score it on the held-out photos, by source (issue #17 log).

    PYTHONPATH=. python tools/experiments/real_photos_scripts/top_experiment.py DATA SIZE STEPS LR DISTILL

Uses the same cached trunk views as ``python -m mbm.train`` (cache/efficientnet_trunk_*.pt, made on
first use; the training photos without the kept-apart sources, as the recipe) and
:func:`mbm.features.device_top.fine_tune`; prints held-out accuracy by source, accuracy on the
kept-apart sources by device/source, the same for the untrained (zero-shot) top, and both on
DATA/devices_sample.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

from mbm.config import ImageConfig
from mbm.data.readers import list_device_photos, split_photos
from mbm.features.device_top import DeviceTop, fine_tune, trunk
from mbm.features.imagenet_devices import DEVICES
from mbm.paths import CACHE
from mbm.preprocess import normalise_pixels, prepare_image, read_image
from mbm.scenarios.voice_control.data import kept_apart, load_photo_pool
from mbm.scenarios.voice_control.image_cache import TOP_BATCH, centre_views, photo_views, trunk_outputs

data, size, steps = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
lr, distill = float(sys.argv[4]), float(sys.argv[5])
train, held = split_photos(list_device_photos(data))
train, unseen = kept_apart(train)[0], kept_apart(list_device_photos(data))[1]
cfg = ImageConfig(size=size)
pool = load_photo_pool(train, cfg)
views = photo_views(pool, [p.path.name for p in train], size, 6, 0, CACHE)
held_pool = load_photo_pool(held, cfg)
held_views = trunk_outputs(lambda a, b: normalise_pixels(centre_views(held_pool.pixels[a:b], size)), len(held))
unseen_pool = load_photo_pool(unseen, cfg)
unseen_views = trunk_outputs(lambda a, b: normalise_pixels(centre_views(unseen_pool.pixels[a:b], size)), len(unseen))
samples = sorted((data / "devices_sample").glob("*.jpg"))
sample_trunk = trunk(torch.stack([prepare_image(read_image(str(f), cfg), cfg).pixels for f in samples]))
tops = {"zero-shot": DeviceTop().eval(),
        "fine-tuned": fine_tune(DeviceTop(), views["trunk"], views["teacher"], pool.devices, steps, lr, TOP_BATCH,
                                distill, 0)}
for name, top in tops.items():
    with torch.no_grad():
        pred = top(held_views["trunk"].float())["device"].argmax(1)
        sample_pred = top(sample_trunk)["device"].argmax(1).tolist()
        unseen_pred = top(unseen_views["trunk"].float())["device"].argmax(1)
    by, kept = defaultdict(list), defaultdict(list)
    for p, y, s in zip(pred.tolist(), held_pool.devices.tolist(), held_pool.sources):
        by[s].append(p == y)
    for p, y, s in zip(unseen_pred.tolist(), unseen_pool.devices.tolist(), unseen_pool.sources):
        kept[f"{DEVICES[y]}/{s}"].append(p == y)
    print(json.dumps({"top": name, "held_out": round(float((pred == held_pool.devices).float().mean()), 4),
                      "by_source": {s: round(sum(v) / len(v), 3) for s, v in sorted(by.items())},
                      "kept_apart_mean": round(sum(sum(v) / len(v) for v in kept.values()) / len(kept), 4),
                      "kept_apart": {s: round(sum(v) / len(v), 3) for s, v in sorted(kept.items())},
                      "devices_sample": [f"{f.stem}->{DEVICES[i]}" for f, i in zip(samples, sample_pred)]}))
