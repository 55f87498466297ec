"""Where the shipped top misses held-out photos: accuracy by source, Tiny ImageNet's confusions, and
what a flipped second view would add (issue #17 log, stop 25).

    PYTHONPATH=. python tools/experiments/real_photos_scripts/heldout_by_source.py ../shared/data

The device top of ``checkpoints/voice_control.pt`` alone (the photo's device, as the fusion reads it)
on the held-out photos of DATA, one plain view each, and the same with its horizontal mirror averaged in.
"""

import sys
from collections import Counter, defaultdict
from pathlib import Path

import torch

from mbm.checkpoint import load_checkpoint
from mbm.config import ImageConfig
from mbm.data.readers import list_device_photos, split_photos
from mbm.features.imagenet_devices import DEVICES
from mbm.preprocess import normalise_pixels
from mbm.scenarios.voice_control.data import load_photo_pool
from mbm.scenarios.voice_control.image_cache import centre_views, trunk_outputs

ckpt = load_checkpoint("checkpoints/voice_control.pt", "voice_control")
top, size = ckpt.build_model().encoders["image"].top.eval(), ckpt.config.image.size
held = split_photos(list_device_photos(Path(sys.argv[1])))[1]
pool = load_photo_pool(held, ImageConfig(size=size))
probs = {}
for name, flip in (("plain", False), ("mirrored", True)):
    views = trunk_outputs(lambda a, b, flip=flip: normalise_pixels(centre_views(pool.pixels[a:b], size).flip(3) if flip
                                                        else centre_views(pool.pixels[a:b], size)), len(held))
    with torch.no_grad():
        probs[name] = top(views["trunk"].float())["device"].softmax(1)
probs["plain + mirrored"] = probs["plain"] + probs["mirrored"]
truth, tin = pool.devices, torch.tensor([s == "tin" for s in pool.sources])
for name, p in probs.items():
    right = (p.argmax(1) == truth).float()
    print(f"{name}: held-out {right.mean():.4f}, tin {right[tin].mean():.4f} ({int(tin.sum())}), "
          f"other sources {right[~tin].mean():.4f} ({int((~tin).sum())})")
pred = probs["plain"].argmax(1)
by = defaultdict(list)
for p, t, s in zip(pred.tolist(), truth.tolist(), pool.sources):
    by[f"{DEVICES[t]}/{s}"].append(p == t)
print({k: (round(sum(v) / len(v), 3), len(v)) for k, v in sorted(by.items())})
errors = Counter((DEVICES[t], DEVICES[p]) for p, t, s in zip(pred.tolist(), truth.tolist(), pool.sources)
                 if s == "tin" and p != t)
print("Tiny ImageNet errors (truth, read as):", errors.most_common())
