"""Choose the "no device" detector on a validation split (never the held-out split, never collections/).

    PYTHONPATH=. python tools/experiments/real_photos_scripts/presence_choice.py DATA

As lite0_choice.py: a fifth of the voice-control training photos (by file-name hash) is the
validation split, the top is fine-tuned on the rest (two cached views, 192 px). The training part of
DATA/not_devices is split again the same way: four fifths are negatives to fit on, a fifth is the
validation negatives. Each candidate detector is fitted on the fitting photos' views against faces,
synthetic images and the fitting negatives, and scored on the validation photos and negatives at the
line that accepts 95 % of the validation device photos, and at the fitted line (98 % of the views).
"""

import json
import sys
from pathlib import Path

import torch

from mbm.config import ImageConfig
from mbm.data.readers import _hash, list_device_photos, split_photos
from mbm.features.device_top import DeviceTop, fine_tune, trunk
from mbm.features.imagenet_devices import zero_shot
from mbm.features.presence import balanced_weights, fit_presence
from mbm.paths import CACHE
from mbm.preprocess import normalise_pixels
from mbm.scenarios.voice_control.data import kept_apart, load_photo_pool
from mbm.scenarios.voice_control.image_cache import (
    DISTILL,
    TOP_BATCH,
    TOP_LR,
    TOP_STEPS,
    centre_views,
    face_pixels,
    photo_pixels,
    photo_views,
    split_faces,
    split_not_devices,
    synthetic_non_devices,
    tinted,
    top_views,
    trunk_outputs,
)

data, size = Path(sys.argv[1]), 192
train = kept_apart(split_photos(list_device_photos(data))[0])[0]
val = [p for p in train if _hash(f"val/{p.path.name}") % 5 == 0]
fit = [p for p in train if _hash(f"val/{p.path.name}") % 5 != 0]
neg_paths = split_not_devices(data)[0]
neg_val = [p for p in neg_paths if _hash(f"val/{p.name}") % 5 == 0]
neg_fit = [p for p in neg_paths if _hash(f"val/{p.name}") % 5 != 0]
cfg = ImageConfig(size=size)
pool, val_pool = load_photo_pool(fit, cfg), load_photo_pool(val, cfg)
views = photo_views(pool, [p.path.name for p in fit], size, 2, 0, CACHE)
val_trunk = trunk_outputs(lambda a, b: normalise_pixels(centre_views(val_pool.pixels[a:b], size)), len(val))["trunk"]
top = fine_tune(DeviceTop(), views["trunk"], views["teacher"], pool.devices, TOP_STEPS, TOP_LR, TOP_BATCH, DISTILL, 0)
g = torch.Generator().manual_seed(1)
faces = face_pixels(split_faces(data)[0], cfg)
negatives = torch.cat([faces, tinted(faces, g), synthetic_non_devices(64, size, g), photo_pixels(neg_fit, cfg)])


def outputs(pixels):
    return top_views(top, torch.cat([trunk(pixels[s:s + 64]) for s in range(0, len(pixels), 64)]))


pos = [top_views(top, v) for v in views["trunk"]]
pos = {k: torch.cat([o[k] for o in pos]) for k in pos[0]}
neg, vpos, vneg = outputs(negatives), top_views(top, val_trunk), outputs(photo_pixels(neg_val, cfg))
weights = balanced_weights(pool.devices.repeat(len(views["trunk"])), list(pool.sources) * len(views["trunk"]))


def features(out, kind):
    if kind == "pooled":
        return out["pooled"]
    if kind == "pooled+logprobs":
        return torch.cat([out["pooled"], out["logits"].log_softmax(1)], 1)
    if kind == "logprobs":
        return out["logits"].log_softmax(1)
    raise ValueError(kind)


for kind in ("pooled", "pooled+logprobs", "logprobs"):
    for l2 in (0.1, 0.01):
        head = fit_presence(features(pos, kind), zero_shot(pos["logits"]), weights, features(neg, kind),
                            zero_shot(neg["logits"]), l2=l2)
        with torch.no_grad():
            pv = head(features(vpos, kind), zero_shot(vpos["logits"])).sigmoid()
            nv = head(features(vneg, kind), zero_shot(vneg["logits"])).sigmoid()
        line95 = float(pv.sort().values[int(0.05 * len(pv))])
        row = {"features": kind, "l2": l2, "fitted_line": round(float(head.threshold), 3),
               "val_false_rejection_at_fitted": round(float((pv < head.threshold).float().mean()), 3),
               "val_neg_rejection_at_fitted": round(float((nv < head.threshold).float().mean()), 3),
               "line_95": round(line95, 3), "val_neg_rejection_at_95": round(float((nv < line95).float().mean()), 3)}
        print(json.dumps(row), flush=True)
print(json.dumps({"n_val_devices": len(pv), "n_val_negatives": len(nv), "n_fit_negatives": len(neg["pooled"])}))
