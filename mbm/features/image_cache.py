"""Training the voice-control model on the pretrained SqueezeNet: cached views, fitted heads, sampler.

The backbone is frozen, so what it says about a photo can be computed once: every training photo
is seen as ``views`` versions (view 0 the plain centre crop, then augmented crops: scale, flip,
blur, colour, grey, occlusion; :func:`mbm.data.augment.augment_images`), each run through SqueezeNet
once and stored under ``cache/`` (gitignored), keyed by the photos, size, views, seed and the
weights' checksum. Then:

1. the device head is fitted on all views, source-balanced (:func:`fit_device_head`),
2. the presence head on the same views against non-device images: faces of the training
   identities of ``DIR/faces`` (as they are and colour-tinted), plain colours with a little noise,
   colour gradients, pixel noise
   and colour blobs; its threshold accepts 98 % of the (source-weighted) training views,
3. every view becomes a 15-channel score map, and the fusion is trained on those
   (:class:`ScoreMapSampler`): a batch costs no backbone pass at all.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mbm.config import ImageConfig
from mbm.data import augment
from mbm.scenarios.portrait.faces import list_face_photos
from mbm.data.readers import _hash
from mbm.scenarios.voice_control.data import PhotoPool, VoiceControlSampler
from mbm.features.device_head import balanced_weights, fit_device_head, fit_presence
from mbm.features.imagenet_devices import zero_shot
from mbm.features.squeezenet import SHA256
from mbm.features.squeezenet_encoder import BackboneOutputs, SqueezeNetImageEncoder, backbone_outputs
from mbm.preprocess import InputError, normalise_pixels, prepare_image, read_image

DEVICE_L2 = 0.1  # chosen by leave-one-source-out accuracy on the training photos (docs/real_photos.md)
PRESENCE_L2 = 0.1  # 0.01 accepted an out-of-source colour portrait; equal on held-out faces and devices
FACE_HELDOUT = 0.2  # share of face identities kept out of the presence head's negatives


def _batched(pixels_fn, n: int, batch: int = 64, desc: str = "squeezenet") -> BackboneOutputs:
    parts: list[BackboneOutputs] = []
    for s in tqdm(range(0, n, batch), desc=desc, leave=False):
        parts.append(backbone_outputs(pixels_fn(s, min(n, s + batch))))
    return BackboneOutputs({k: torch.cat([p[k] for p in parts]) for k in ("pooled", "logits", "cell_zs")})


def centre_views(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, S + m, S + m) 0..255 -> (B, 3, S, S) the plain view (whole stored crop, resized)."""
    return F.interpolate(pixels.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def photo_views(pool: PhotoPool, names: list[str], size: int, views: int, seed: int,
                cache_dir: Path | None) -> list[BackboneOutputs]:
    """Backbone outputs of ``views`` versions of every photo of ``pool`` (cached on disk)."""
    key = hashlib.sha1("|".join([SHA256, str(size), str(views), str(seed), *names]).encode()).hexdigest()[:16]
    path = None if cache_dir is None else Path(cache_dir) / f"squeezenet_views_{key}.pt"
    if path is not None and path.is_file():
        return [BackboneOutputs(v) for v in torch.load(path, weights_only=True)]
    g = torch.Generator().manual_seed(seed)
    out = []
    for v in range(views):
        def pixels(a, b, v=v):
            imgs = centre_views(pool.pixels[a:b], size) if v == 0 else augment.augment_images(
                pool.pixels[a:b].float(), size, g)
            return normalise_pixels(imgs)
        out.append(_batched(pixels, len(pool.devices), desc=f"squeezenet view {v + 1}/{views}"))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save([dict(v) for v in out], path)
    return out


def split_faces(data_dir: Path):
    """Face photos of ``data_dir`` -> (training identities', held-out identities') photos."""
    faces = list_face_photos(data_dir)
    held = [f for f in faces if _hash(f"{f.source}/{f.identity}") % 1000 < FACE_HELDOUT * 1000]
    keep = set(held)
    return [f for f in faces if f not in keep], held


def face_pixels(faces, cfg: ImageConfig) -> torch.Tensor:
    """(N, 3, S, S) normalised pixels of readable face photos."""
    out = []
    for f in faces:
        try:
            out.append(prepare_image(read_image(str(f.path), cfg), cfg).pixels)
        except InputError:
            continue
    return torch.stack(out) if out else torch.zeros(0, 3, cfg.size, cfg.size)


def tinted(pixels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Grey face photos -> coloured ones (per-channel gain and offset), so grey is not the cue."""
    x = (pixels + 0.5) * 255
    gain = 0.5 + torch.rand(len(x), 3, 1, 1, generator=g)
    offset = torch.rand(len(x), 3, 1, 1, generator=g) * 60 - 30
    return normalise_pixels((x * gain + offset).clamp(0, 255))


def synthetic_non_devices(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """(4n, 3, S, S) normalised pixels: near-plain colours, gradients, pixel noise, colour blobs."""
    colour = torch.rand(n, 3, 1, 1, generator=g) * 255
    plain = (colour + torch.randn(n, 3, size, size, generator=g) * 3).clamp(0, 255)
    ramp = torch.linspace(0, 1, size)
    a, b = torch.rand(n, 3, 1, 1, generator=g) * 255, torch.rand(n, 3, 1, 1, generator=g) * 255
    horizontal = torch.rand(n, generator=g) < 0.5
    r = torch.where(horizontal[:, None, None, None], ramp[None, None, None, :], ramp[None, None, :, None])
    gradient = a + (b - a) * r
    noise = torch.rand(n, 3, size, size, generator=g) * 255
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 255
    blobs = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return normalise_pixels(torch.cat([plain, gradient.expand(n, 3, size, size), noise, blobs]))


def fit_image_heads(encoder: SqueezeNetImageEncoder, train_views: list[BackboneOutputs], pool: PhotoPool,
                    negatives: BackboneOutputs) -> dict:
    """Fit the device and presence heads into ``encoder``; returns what was measured (training side)."""
    n_views = len(train_views)
    feats = torch.cat([v["pooled"] for v in train_views]).float()
    zs = torch.cat([zero_shot(v["logits"].float()) for v in train_views])
    devices = pool.devices.repeat(n_views)
    sources = list(pool.sources) * n_views
    head = fit_device_head(feats, zs, devices, sources, l2=DEVICE_L2)
    encoder.device_head.load_state_dict(head.state_dict())
    presence = fit_presence(feats, zs, balanced_weights(devices, sources), negatives["pooled"].float(),
                            zero_shot(negatives["logits"].float()), l2=PRESENCE_L2)
    encoder.presence.load_state_dict(presence.state_dict())
    with torch.no_grad():
        p_neg = presence(negatives["pooled"].float(), zero_shot(negatives["logits"].float())).sigmoid()
        p_pos = presence(feats, zs).sigmoid()
        train_acc = float((head(feats, zs).argmax(1) == devices).float().mean())
    thr = float(presence.threshold)
    return {"device_head_train_accuracy": round(train_acc, 4), "presence_threshold": round(thr, 4),
            "presence_train_rejection_non_device": round(float((p_neg < thr).float().mean()), 4),
            "presence_train_false_rejection": round(float((p_pos < thr).float().mean()), 4),
            "views": n_views, "device_l2": DEVICE_L2, "presence_l2": PRESENCE_L2}


class ScoreMapSampler(VoiceControlSampler):
    """The voice-control sampler with the image side read from cached score maps.

    ``maps`` (V, N, 15, g, g): V views of each training photo; ``noise_maps`` (K, 15, g, g): non-device
    images that replace a photo where the sampler puts noise in place of an input.
    """

    def __init__(self, maps: torch.Tensor, noise_maps: torch.Tensor, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.maps, self.noise_maps = maps, noise_maps

    def _image_batch(self, photo_ids: list[int]) -> torch.Tensor:
        v = torch.randint(self.maps.shape[0], (len(photo_ids),), generator=self.g)
        return self.maps[v, torch.tensor(photo_ids)].float()

    def _finish_images(self, images: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is not None and noise.any():
            pick = torch.randint(len(self.noise_maps), (int(noise.sum()),), generator=self.g)
            images[noise] = self.noise_maps[pick].float()
        return images


def prepare_pretrained_images(encoder: SqueezeNetImageEncoder, pool: PhotoPool, names: list[str], data_dir: Path,
                              cfg: ImageConfig, views: int, seed: int, cache_dir: Path | None):
    """Views -> fitted heads -> (score maps (V, N, 15, g, g), noise maps (K, 15, g, g), measured dict)."""
    train_views = photo_views(pool, names, cfg.size, views, seed, cache_dir)
    g = torch.Generator().manual_seed(seed + 1)
    faces = face_pixels(split_faces(data_dir)[0], cfg)
    synthetic = synthetic_non_devices(64, cfg.size, g)
    faces = torch.cat([faces, tinted(faces, g)])
    negatives = _batched(lambda a, b: torch.cat([faces, synthetic])[a:b], len(faces) + len(synthetic),
                         desc="squeezenet non-devices")
    measured = fit_image_heads(encoder, train_views, pool, negatives)
    measured["n_negatives"] = {"faces": len(faces), "synthetic": len(synthetic)}
    maps = torch.stack([encoder.score_map(v) for v in train_views]).half()  # (V, N, 15, g, g)
    synth = BackboneOutputs({k: v[len(faces):] for k, v in negatives.items()})
    noise_maps = encoder.score_map(synth).half()
    return maps, noise_maps, measured
