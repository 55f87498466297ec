# Cache SqueezeNet outputs of every device photo (clean + augmented views) and of non-device images.
import sys, time, torch, numpy as np
from pathlib import Path
from mbm.config import ImageConfig
from mbm.data.readers import list_device_photos, split_photos
from mbm.scenarios.voice_control.data import load_photo_pool
from mbm.data import augment
from mbm.preprocess import normalise_pixels, prepare_image, read_image
from mbm.features.squeezenet import pretrained_squeezenet
from mbm.features.imagenet_devices import zero_shot
torch.set_num_threads(2)
S = int(sys.argv[1]); VIEWS = int(sys.argv[2])
net = pretrained_squeezenet()
photos = list_device_photos(Path('/work/shared/data'))
t = time.time()
pool = load_photo_pool(photos, ImageConfig(size=S), margin=S // 8)
print('loaded', time.time() - t, flush=True)
def run(imgs):  # (B,3,S,S) 0..255 -> pooled (B,512), logits (B,1000), cellzs (B,7,g,g)
    x = (normalise_pixels(imgs) + 0.5) * 255
    with torch.inference_mode():
        grid = net.features(x); cm = net.class_map(grid)
        return grid.mean((2, 3)), cm.mean((2, 3)), zero_shot(cm, 1)
g = torch.Generator().manual_seed(0)
out = {k: [] for k in ('pooled', 'logits', 'cellzs')}
t = time.time()
for v in range(VIEWS + 1):
    for s in range(0, len(photos), 128):
        px = pool.pixels[s:s + 128].float()
        if v == 0:
            m = S // 16; imgs = px[:, :, m:m + S, m:m + S]  # centre
            imgs = torch.nn.functional.interpolate(pool.pixels[s:s+128].float(), size=(S, S), mode='bilinear', align_corners=False, antialias=True)
        else:
            imgs = augment.augment_images(px, S, g)
        for k, val in zip(out, run(imgs)):
            out[k].append(val)
    print('view', v, time.time() - t, flush=True)
res = {k: torch.cat(v).reshape(VIEWS + 1, len(photos), *v[0].shape[1:]) for k, v in out.items()}
res['devices'] = pool.devices; res['sources'] = pool.sources; res['names'] = [p.path.name for p in photos]
torch.save(res, f'/work/main/cache/sq_feats_{S}.pt')
print('done', time.time() - t)
