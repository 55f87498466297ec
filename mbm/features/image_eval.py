"""Image-side metrics of a voice-control checkpoint on the pretrained SqueezeNet (issue #17).

- ``device_accuracy_unseen_source``: the source shortcut test. For every source (file-name prefix)
  of DIR's device photos, the image device head is fitted again with the checkpoint's recipe
  (:func:`mbm.features.device_head.fit_device_head`, same L2, source-balanced) on every other
  source's photos, and scored on that source's photos, for each class that has >= 2 sources in DIR
  (a class with one source cannot be told apart from its source). The key is the mean over those
  classes of the mean over their sources (every (class, source) pair counts, however small);
  ``..._by_class`` has the per-source numbers. One plain view per photo (no augmented views: the
  shipped head saw 4), so it slightly understates the shipped recipe. The zero-shot prior alone
  on the same photos is ``device_accuracy_zero_shot``.
- ``no_device_rejection``: the share of non-device images answered "no device recognised": DIR's
  faces (with ``--split heldout``: the identities the presence head never saw), 20 flat colours (refused
  as the app does, before the model), 20 near-plain colours (noise of 3 grey levels: min-max
  stretches it), 20 gradients and 20 pixel-noise images (seeded).
- ``device_false_rejection``: the share of the scored device photos answered "no device recognised".
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from mbm.data.readers import DevicePhoto
from mbm.features.device_head import fit_device_head
from mbm.features.image_cache import DEVICE_L2, _batched, face_pixels, split_faces, synthetic_non_devices
from mbm.features.imagenet_devices import zero_shot
from mbm.scenarios.voice_control.spec import DEVICES


def uses_pretrained_images(model) -> bool:
    return hasattr(model.encoders["image"], "recognise")


def rejection_metrics(model, pixels: torch.Tensor, data_dir: Path | None, split: str, size: int) -> dict:
    """``device_false_rejection`` on (N, 3, S, S) device photos, ``no_device_rejection`` on non-devices."""
    enc = model.encoders["image"]
    out: dict = {}
    if len(pixels):
        accepted = torch.cat([enc.recognise(pixels[s:s + 128])["accepted"] for s in range(0, len(pixels), 128)])
        out["device_false_rejection"] = round(float((~accepted).float().mean()), 4)
    groups: dict[str, torch.Tensor] = {}
    if data_dir is not None:
        train_faces, held_faces = split_faces(data_dir)
        from mbm.config import ImageConfig

        faces = held_faces if split == "heldout" else train_faces + held_faces if split == "all" else train_faces
        groups["faces"] = face_pixels(faces, ImageConfig(size=size))
    synth = synthetic_non_devices(20, size, torch.Generator().manual_seed(12345))
    groups["near_plain_colours"], groups["gradients"], groups["noise"] = synth[:20], synth[20:40], synth[40:60]
    # exactly flat colours: min-max makes them one value; the app refuses them before the model
    # ("a single flat colour ... no device recognised"), so they count as rejected when so
    groups["plain_colours"] = torch.full((20, 3, size, size), -0.5)
    by_group, rejected = {}, []
    for name, px in groups.items():
        if not len(px):
            continue
        flat = (px.amax((1, 2, 3)) - px.amin((1, 2, 3))) < 2 / 255
        r = torch.cat([~enc.recognise(px[s:s + 128])["accepted"] for s in range(0, len(px), 128)]) | flat
        by_group[name] = {"rejected": round(float(r.float().mean()), 4), "n": len(r)}
        rejected.append(r)
    if rejected:
        out["no_device_rejection"] = round(float(torch.cat(rejected).float().mean()), 4)
        out["no_device_rejection_by_kind"] = by_group
    return out


def unseen_source_metrics(photos: list[DevicePhoto], pixels: torch.Tensor) -> dict:
    """Leave-one-source-out accuracy of the image device head (see the module docstring)."""
    if not len(photos):
        return {}
    out = _batched(lambda a, b: pixels[a:b], len(pixels), desc="squeezenet photos")
    feats, zs = out["pooled"], zero_shot(out["logits"])
    devices = torch.tensor([DEVICES.index(p.device) for p in photos])
    sources = np.array([p.source for p in photos])
    result = {"device_accuracy_zero_shot": round(float((zs.argmax(1) == devices).float().mean()), 4)}
    multi = {d for d in range(len(DEVICES)) if len(set(sources[(devices == d).numpy()])) >= 2}
    per_class: dict[str, dict] = defaultdict(dict)
    for s in sorted(set(sources)):
        test = torch.from_numpy(sources == s)
        tested = [d for d in multi if bool((test & (devices == d)).any())]
        if not tested:
            continue
        train = ~test
        head = fit_device_head(feats[train], zs[train], devices[train], list(sources[train.numpy()]), l2=DEVICE_L2)
        with torch.no_grad():
            pred = head(feats, zs).argmax(1)
        for d in tested:
            sel = test & (devices == d)
            per_class[DEVICES[d]][str(s)] = {"accuracy": round(float((pred[sel] == d).float().mean()), 4),
                                             "n": int(sel.sum())}
    if per_class:
        result["device_accuracy_unseen_source"] = round(float(np.mean(
            [np.mean([v["accuracy"] for v in srcs.values()]) for srcs in per_class.values()])), 4)
        result["device_accuracy_unseen_source_by_class"] = dict(per_class)
    return result
