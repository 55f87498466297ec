"""Image-side metrics of a voice-control checkpoint on the pretrained EfficientNet-Lite0.

- ``device_accuracy_unseen_source``: the source shortcut test. DIR's device photos are split by
  source (file-name prefix) into :data:`UNSEEN_FOLDS` folds (:func:`source_folds`: no fold takes
  every source of a class). For each fold a fresh top is fine-tuned on the other folds' photos
  with the checkpoint's recipe (:func:`mbm.features.device_top.fine_tune`, same learning rate and
  distillation, but one plain view per photo and :data:`UNSEEN_STEPS` steps of
  :data:`UNSEEN_BATCH`, to keep the evaluation short) and scored on the fold's photos, for each
  class that has >= 2 sources in DIR (a class with one source cannot be told apart from its
  source). The key is the mean over those classes of the mean over their sources (every (class,
  source) pair counts, however small); ``..._by_class`` has the per-source numbers. Leaving out
  several sources at once, with fewer views and steps, makes it a pessimistic estimate. The
  ImageNet network's zero-shot answer on the same photos is ``device_accuracy_zero_shot``.
- ``no_device_rejection``: the share of non-device images answered "no device recognised": DIR's
  faces (with ``--split heldout``: the identities the presence head never saw), 20 flat colours (refused
  as the app does, before the model), 20 near-plain colours (noise of 3 grey levels: min-max
  stretches it), 20 gradients and 20 pixel-noise images (seeded).
- ``no_device_rejection_everyday``: the same on every photo under ``DIR/collections/everyday/`` (a
  general photo collection, none of it a device, never trained on), with ``..._by_class``;
  ``no_device_rejection_not_devices``: on the fifth of ``DIR/not_devices`` the presence head never
  trained on (with ``--split heldout``; the rest with ``train``, all with ``all``).
- ``device_false_rejection``: the share of the scored device photos answered "no device recognised".
- ``device_accuracy_kept_apart_sources``: the checkpoint itself (its image side alone) on every photo of
  DIR from :data:`mbm.scenarios.voice_control.data.KEPT_APART_SOURCES`, sources its image side never
  trained on; the mean over (device, source) pairs, with each pair's accuracy, count and share
  rejected ("no device recognised"; the device answer is scored all the same).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from mbm.data.readers import IMAGE_SUFFIXES, DevicePhoto
from mbm.features.device_top import DeviceTop, fine_tune
from mbm.scenarios.voice_control.image_cache import (
    DISTILL,
    TOP_LR,
    face_pixels,
    photo_pixels,
    readable_photos,
    split_faces,
    split_not_devices,
    synthetic_non_devices,
    top_views,
    trunk_outputs,
)
from mbm.scenarios.voice_control.spec import DEVICES


def uses_pretrained_images(model) -> bool:
    return hasattr(model.encoders["image"], "recognise")


def recognised(model, pixels: torch.Tensor, batch: int = 128) -> dict[str, torch.Tensor]:
    """The image encoder's ``recognise`` on (N, 3, S, S) pixels (N >= 1), in batches, concatenated."""
    parts = [model.encoders["image"].recognise(pixels[s:s + batch]) for s in range(0, len(pixels), batch)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def rejection_metrics(model, pixels: torch.Tensor, data_dir: Path | None, split: str, size: int) -> dict:
    """``device_false_rejection`` on (N, 3, S, S) device photos, ``no_device_rejection`` on non-devices."""
    out: dict = {}
    if len(pixels):
        accepted = recognised(model, pixels)["accepted"]
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
        r = ~recognised(model, px)["accepted"] | flat
        by_group[name] = {"rejected": round(float(r.float().mean()), 4), "n": len(r)}
        rejected.append(r)
    if rejected:
        out["no_device_rejection"] = round(float(torch.cat(rejected).float().mean()), 4)
        out["no_device_rejection_by_kind"] = by_group
    if data_dir is not None:
        out.update(real_photo_rejection(model, data_dir, split, size))
    return out


def real_photo_rejection(model, data_dir: Path, split: str, size: int) -> dict:
    """``no_device_rejection_everyday`` (and by class) and ``no_device_rejection_not_devices``."""
    from mbm.config import ImageConfig

    cfg, out = ImageConfig(size=size), {}
    everyday = Path(data_dir) / "collections" / "everyday"
    paths = sorted(p for p in everyday.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES) if everyday.is_dir() else []
    pixels, paths = readable_photos(paths, cfg)  # an unreadable file is left out, with its class
    if paths:
        classes = [p.parent.name for p in paths]
        rejected = ~recognised(model, pixels)["accepted"]
        out["no_device_rejection_everyday"] = round(float(rejected.float().mean()), 4)
        out["no_device_rejection_everyday_by_class"] = {
            c: round(float(rejected[torch.tensor([x == c for x in classes])].float().mean()), 4)
            for c in sorted(set(classes))}
        out["n_everyday_photos"] = len(paths)
    train, held = split_not_devices(data_dir)
    things = held if split == "heldout" else train + held if split == "all" else train
    if things:
        rejected = ~recognised(model, photo_pixels(things, cfg))["accepted"]
        out["no_device_rejection_not_devices"] = round(float(rejected.float().mean()), 4)
        out["n_not_devices_photos"] = len(things)
    return out


UNSEEN_FOLDS = 3
UNSEEN_STEPS = 300
UNSEEN_BATCH = 64


def source_folds(devices: list[int], sources: list[str], k: int = UNSEEN_FOLDS) -> list[set[str]]:
    """Sources -> k sets, largest source first into the smallest fold that leaves every class of it
    another source outside the fold (a source that fits nowhere stays in training: it is never scored)."""
    classes_of = defaultdict(set)
    count = defaultdict(int)
    for d, s in zip(devices, sources):
        classes_of[s].add(d)
        count[s] += 1
    sources_of = defaultdict(set)
    for s, ds in classes_of.items():
        for d in ds:
            sources_of[d].add(s)
    folds: list[set[str]] = [set() for _ in range(k)]
    for s in sorted(count, key=lambda s: (-count[s], s)):
        for fold in sorted(folds, key=lambda f: sum(count[x] for x in f)):
            if all(sources_of[d] - fold - {s} for d in classes_of[s]):
                fold.add(s)
                break
    return folds


def unseen_source_metrics(photos: list[DevicePhoto], pixels: torch.Tensor, seed: int = 0) -> dict:
    """Leave-sources-out accuracy of the device top (see the module docstring)."""
    if not len(photos):
        return {}
    views = trunk_outputs(lambda a, b: pixels[a:b], len(pixels), desc="efficientnet photos")
    devices = torch.tensor([DEVICES.index(p.device) for p in photos])
    sources = np.array([p.source for p in photos])
    zs = top_views(DeviceTop().eval(), views["trunk"])["device"]
    result = {"device_accuracy_zero_shot": round(float((zs.argmax(1) == devices).float().mean()), 4)}
    multi = {d for d in range(len(DEVICES)) if len(set(sources[(devices == d).numpy()])) >= 2}
    per_class: dict[str, dict] = defaultdict(dict)
    for fold in source_folds(devices.tolist(), list(sources)):
        test = torch.from_numpy(np.isin(sources, sorted(fold)))
        if not bool((test & torch.isin(devices, torch.tensor(sorted(multi)))).any()):
            continue
        top = fine_tune(DeviceTop(), views["trunk"][None], views["teacher"][None], devices, UNSEEN_STEPS, TOP_LR,
                        UNSEEN_BATCH, DISTILL, seed, keep=~test)
        pred = top_views(top, views["trunk"])["device"].argmax(1)
        for s in sorted(fold):
            for d in sorted(multi):
                sel = test & torch.from_numpy(sources == s) & (devices == d)
                if sel.any():
                    per_class[DEVICES[d]][str(s)] = {"accuracy": round(float((pred[sel] == d).float().mean()), 4),
                                                     "n": int(sel.sum())}
    if per_class:
        result["device_accuracy_unseen_source"] = round(float(np.mean(
            [np.mean([v["accuracy"] for v in srcs.values()]) for srcs in per_class.values()])), 4)
        result["device_accuracy_unseen_source_by_class"] = dict(per_class)
        result["unseen_source_method"] = (f"{UNSEEN_FOLDS} leave-sources-out folds, {UNSEEN_STEPS} steps of "
                                          f"{UNSEEN_BATCH}, 1 view")
    return result


def kept_apart_metrics(model, photos: list[DevicePhoto], pixels: torch.Tensor) -> dict:
    """The model's image-only device answer on photos of the kept-apart sources (module docstring)."""
    from mbm.scenarios.voice_control.data import KEPT_APART_SOURCES

    index = [i for i, p in enumerate(photos) if p.source in KEPT_APART_SOURCES]
    if not index:
        return {}
    verdict = recognised(model, pixels[index])
    pred, accepted = verdict["device_probs"].argmax(1), verdict["accepted"]
    truth = torch.tensor([DEVICES.index(photos[i].device) for i in index])
    groups = np.array([f"{photos[i].device}/{photos[i].source}" for i in index])  # a source may hold 2 devices
    by_source = {}
    for group in sorted(set(groups)):
        sel = torch.from_numpy(groups == group)
        by_source[str(group)] = {"accuracy": round(float((pred[sel] == truth[sel]).float().mean()), 4),
                                 "rejected": round(float((~accepted[sel]).float().mean()), 4), "n": int(sel.sum())}
    mean = float(np.mean([v["accuracy"] for v in by_source.values()]))
    return {"device_accuracy_kept_apart_sources": round(mean, 4),
            "device_accuracy_kept_apart_sources_by_source": by_source}
