import torch, glob
from pathlib import Path
import matplotlib.cbook as cb
from mbm.checkpoint import load_checkpoint
from mbm.config import ImageConfig
from mbm.features import image_cache as IC
from mbm.features.device_head import fit_presence, balanced_weights
from mbm.features.imagenet_devices import zero_shot
from mbm.features.squeezenet_encoder import backbone_outputs
from mbm.data.readers import list_device_photos, split_photos
from mbm.preprocess import prepare_image, read_image
torch.set_num_threads(2)
cfg = ImageConfig(size=160)
views = [v for v in torch.load(sorted(glob.glob('cache/squeezenet_views_*.pt'))[-1], weights_only=True)]
photos = split_photos(list_device_photos(Path('../shared/data')))
train, held = photos
devices = torch.tensor([["blinds","door","fan","heater","lamp","music_player","tv"].index(p.device) for p in train])
feats = torch.cat([v['pooled'] for v in views]).float(); zs = torch.cat([zero_shot(v['logits'].float()) for v in views])
w = balanced_weights(devices.repeat(len(views)), [p.source for p in train] * len(views))
g = torch.Generator().manual_seed(1)
tr_faces, ho_faces = IC.split_faces(Path('../shared/data'))
fp = IC.face_pixels(tr_faces, cfg)
def tint(px):  # grey faces -> coloured: per-channel gain and offset
    x = (px + 0.5) * 255
    gain = 0.5 + torch.rand(len(x), 3, 1, 1, generator=g); off = torch.rand(len(x), 3, 1, 1, generator=g) * 60 - 30
    return IC.normalise_pixels((x * gain + off).clamp(0, 255))
synth = IC.synthetic_non_devices(64, 160, g)
neg_plain = backbone_outputs(torch.cat([fp, synth]))
neg_tint = backbone_outputs(tint(fp))
tests = {}
def load(f): return prepare_image(read_image(f, cfg), cfg).pixels[None]
tests['grace'] = backbone_outputs(load(cb.get_sample_data('grace_hopper.jpg', asfileobj=False)))
tests['f3'] = backbone_outputs(load('/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/embedded-book/assets/f3.jpg'))
tests['held_faces'] = backbone_outputs(IC.face_pixels(ho_faces, cfg))
tests['held_faces_tinted'] = backbone_outputs(tint(IC.face_pixels(ho_faces, cfg)))
tests['sample'] = backbone_outputs(torch.cat([load(f) for f in sorted(glob.glob('../shared/data/devices_sample/*.jpg'))]))
hp = torch.cat([prepare_image(read_image(str(p.path), cfg), cfg).pixels[None] for p in held])
tests['held_devices'] = backbone_outputs(hp)
for name, negs in [('plain', [neg_plain]), ('plain+tinted', [neg_plain, neg_tint])]:
    nf = torch.cat([n['pooled'] for n in negs]); nz = torch.cat([zero_shot(n['logits']) for n in negs])
    for l2 in (0.01, 0.1):
        head = fit_presence(feats, zs, w, nf, nz, l2=l2)
        with torch.no_grad():
            r = {k: round(float((head(v['pooled'], zero_shot(v['logits'])).sigmoid() < head.threshold).float().mean()), 3) for k, v in tests.items()}
            pg = float(head(tests['grace']['pooled'], zero_shot(tests['grace']['logits'])).sigmoid())
        print(name, l2, 'thr', round(float(head.threshold), 3), 'rejected share:', r, 'p(grace)', round(pg, 3), flush=True)
