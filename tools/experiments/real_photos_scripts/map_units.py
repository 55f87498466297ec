"""The image map's deletion ratio by unit grid and fill (issue #17 round 3, docs/history.md "Round 3 (stop 23)").

    PYTHONPATH=. python tools/experiments/real_photos_scripts/map_units.py CHECKPOINT [DATA]

For the 60 held-out input sets of the evaluation (``mbm.scenarios.voice_control.maps.held_out_samples``; DATA defaults to
../shared/data), the occlusion map of the image on a g x g grid (g = 7, 5, 4, 3), each region
masked with the photo's mean colour or a 31 px box blur; prints the mean drop of p(predicted
action) when the top 20 % of regions by that map are masked, the same for random 20 % (4 draws),
and their ratio. (``mbm.scenarios.voice_control.maps`` now uses 4 x 4 and a blur a sixth of the photo wide.)
"""

import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mbm.checkpoint import load_checkpoint
from mbm.scenarios.voice_control import maps
from mbm.scenarios.voice_control.eval_inputs import encode_clip_windows, encode_photo_crops, pair_clips_with_devices
from mbm.scenarios.voice_control.evaluate import voice_control_data
from mbm.scenarios.voice_control.spec import action_probs

torch.set_num_threads(2)
ckpt = load_checkpoint(sys.argv[1], "voice_control")
model = ckpt.build_model().eval()
index = torch.tensor(ckpt.extra["action_index"])
clips, photos = voice_control_data(Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/data"), "heldout")
_, mels, clips = encode_clip_windows(clips, ckpt.config.audio)
_, pixels, photos = encode_photo_crops(photos, ckpt.config.image)
samples = maps.held_out_samples(ckpt, mels, pixels, clips, photos, pair_clips_with_devices(clips, photos))


def regions(g: int, side: int) -> list:
    e = np.linspace(0, side, g + 1).round().astype(int)
    return [(slice(e[r], e[r + 1]), slice(e[c], e[c + 1])) for r in range(g) for c in range(g)]


def masked(x: torch.Tensor, spans: list, units, fill: str) -> torch.Tensor:
    y = x.clone()
    source = F.avg_pool2d(x[None], 31, 1, 15, count_include_pad=False)[0] if fill == "blur" else None
    for u in units:
        rows, cols = spans[u]
        y[:, rows, cols] = source[:, rows, cols] if fill == "blur" else x.mean(dim=(1, 2))[:, None, None]
    return y


with torch.inference_mode():
    for fill in ("mean", "blur"):
        for g in (7, 5, 4, 3):
            top_drops, random_drops = [], []
            gen = torch.Generator().manual_seed(0)
            for s in samples:
                x = s["image"]
                spans = regions(g, x.shape[-1])
                full = model({m: v[None] for m, v in s.items()})
                probs = action_probs(full.logits["device"].softmax(-1), full.logits["word"].softmax(-1), index)[0]
                target, p = int(probs.argmax()), float(probs.max())
                n = len(spans)
                occlusion = p - maps._p_target(model, index, s, target, "image",
                                               [masked(x, spans, [u], fill) for u in range(n)])
                k = max(1, math.ceil(0.2 * n))
                variants = [masked(x, spans, occlusion.argsort(descending=True)[:k].tolist(), fill)]
                variants += [masked(x, spans, torch.randperm(n, generator=gen)[:k].tolist(), fill) for _ in range(4)]
                drops = p - maps._p_target(model, index, s, target, "image", variants)
                top_drops.append(float(drops[0]))
                random_drops.append(float(drops[1:].mean()))
            print(f"{fill} {g}x{g}: top 20 % {np.mean(top_drops):.4f}, random 20 % {np.mean(random_drops):.4f}, "
                  f"ratio {np.mean(top_drops) / np.mean(random_drops):.3f}", flush=True)
