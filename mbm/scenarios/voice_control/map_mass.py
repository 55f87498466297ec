"""Where the image map's mass falls: on the device, or on the background around it.

A held-out device photo is shrunk onto a larger square canvas, so the photo fills a known rectangle
with a margin of background around it; the canvas then goes through the app's own path (a spoken
command of a word the device supports, ``VoiceControlPredictor.predict``, the image map the page
draws, :func:`mbm.scenarios.voice_control.maps.with_occlusion_maps`, drawn as :func:`mbm.viz.image_attention_map`), and the
share of the drawn map's mass inside the rectangle is taken (:func:`mbm.scenarios.voice_control.maps.mass_share`).

- ``image_map_mass_on_device``: the mean share over the canvases whose photo the app accepts (a
  canvas answered "no device recognised" has no image map: ``image_map_mass_rejected`` counts
  them, and an all-zero map, nothing to draw, counts as the chance share);
  ``image_map_mass_chance``: the mean rectangle area / canvas area, what a map blind to the
  device would score; ``..._by_background``: the same per background kind.
- Backgrounds, alternating: ``photo``, a photo of none of the seven devices (``DIR/not_devices``,
  the split the presence head never trained on for ``heldout``): real clutter, the honest hard
  case; ``plain``, a flat light fill (a wall, the white of a product shot), the case a visitor saw.
- The photo keeps its aspect ratio; its longer side is 45-70 % of the canvas side, at a random
  place (seeded): the rectangle is 15-49 % of the canvas.
- ``image_map_mass_examples``: the same share on the shipped examples (``assets/voice_control``),
  with the photo as the app shows it shrunk onto a plain canvas the same way (one fixed layout each);
  ``image_map_mass_examples_in_photo``: on the four "up" examples' own crops, the share on the device
  drawn by hand (:data:`EXAMPLE_BOXES`), against the boxes' area share.

    PYTHONPATH=. python tools/experiments/real_photos_scripts/map_mass.py --data ../shared/data --split heldout
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from mbm.scenarios.voice_control.maps import mass_share, with_occlusion_maps
from mbm.scenarios.voice_control.spec import ACTION_TABLE
from mbm.viz import image_attention_map

CANVAS_SCALE = 2  # canvas side = this x the model's image size (the app shrinks it to the model's size)
DEVICE_SIDE = (0.45, 0.70)  # the photo's longer side, as a share of the canvas side
BACKGROUNDS = ("photo", "plain")
PLAIN_LEVEL = (170, 255)  # grey level of a plain background (a light wall, a product shot's white)
SAMPLES = 60
SEED = 0


def fit_background(background, side: int) -> np.ndarray:
    """A background for a (side, side) canvas: a PIL photo (shorter side resized, centre crop) or a
    grey level (int) -> (side, side, 3) uint8."""
    from PIL import Image

    if isinstance(background, (int, np.integer)):
        return np.full((side, side, 3), int(background), dtype=np.uint8)
    img = background.convert("RGB")
    scale = side / min(img.size)
    img = img.resize((max(side, round(img.width * scale)), max(side, round(img.height * scale))),
                     Image.Resampling.BILINEAR)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return np.asarray(img.crop((left, top, left + side, top + side)), dtype=np.uint8).copy()


def device_canvas(photo, background, side: int, rng: random.Random) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """``photo`` (PIL RGB) shrunk onto a (side, side) canvas of ``background`` (see :func:`fit_background`).

    Returns ``(canvas (side, side, 3) uint8, box)``, box = (top, left, bottom, right) of the photo in
    canvas pixels (bottom, right exclusive). Its longer side is a :data:`DEVICE_SIDE` share of
    ``side``, its place uniform over those that keep it whole, both drawn from ``rng``.
    """
    from PIL import Image

    canvas = fit_background(background, side)
    longest = round(rng.uniform(*DEVICE_SIDE) * side)
    scale = longest / max(photo.size)
    w, h = max(1, round(photo.width * scale)), max(1, round(photo.height * scale))
    top, left = rng.randint(0, side - h), rng.randint(0, side - w)
    canvas[top:top + h, left:left + w] = np.asarray(photo.convert("RGB").resize((w, h), Image.Resampling.LANCZOS))
    return canvas, (top, left, top + h, left + w)


def scaled_box(box: tuple[int, int, int, int], side: int, size: int) -> tuple[float, float, float, float]:
    """A box on a (side, side) canvas -> the same box on the model's (size, size) crop of it (the whole
    square canvas, resized)."""
    f = size / side
    return tuple(v * f for v in box)


def map_share(predictor, result, box: tuple[float, float, float, float]) -> float | None:
    """The drawn image map's share of mass inside ``box`` (model-crop pixels); None without an image map;
    the box's area share when the map is all zero (nothing drawn: no better than chance)."""
    if result.inputs.image is None or "image" not in result.maps:
        return None
    size = result.inputs.image.shown.shape[0]
    heat = image_attention_map(result.maps["image"], size)
    share = mass_share(heat, box)
    return _area(box, size) if share is None else share


def _area(box, size: int) -> float:
    top, left, bottom, right = box
    return float((bottom - top) * (right - left)) / (size * size)


def measure_canvases(predictor, items: list[dict], explain=with_occlusion_maps) -> dict:
    """Image map mass on the device over ``items`` ({"canvas", "box" (canvas px), "audio", "background"}).

    ``explain(predictor, result)`` -> the result with the maps the page draws (the app's own by default).
    Returns the ``image_map_mass_*`` numbers (module docstring) and the per-item shares.
    """
    size = predictor.cfg.image.size
    shares, chance, kinds, rejected = [], [], [], 0
    for item in items:
        side = item["canvas"].shape[0]
        box = scaled_box(item["box"], side, size)
        result = predictor.predict(audio=item.get("audio"), image=item["canvas"], text=item.get("text"))
        if result.inputs.image is None:
            rejected += 1
            continue
        shares.append(map_share(predictor, explain(predictor, result), box))
        chance.append(_area(box, size))
        kinds.append(item.get("background", "?"))
    out = {"image_map_mass_on_device": mean_or_none(shares), "image_map_mass_chance": mean_or_none(chance),
           "image_map_mass_n": len(shares), "image_map_mass_rejected": rejected,
           "image_map_mass_by_background": {
               k: {"mass": mean_or_none([s for s, x in zip(shares, kinds) if x == k]),
                   "chance": mean_or_none([c for c, x in zip(chance, kinds) if x == k]),
                   "n": sum(x == k for x in kinds)} for k in sorted(set(kinds))}}
    return out | {"shares": [round(s, 4) for s in shares]}


def mean_or_none(values) -> float | None:
    """The mean to 4 places, or None for no values (a share nothing was measured for)."""
    return round(float(np.mean(values)), 4) if len(values) else None


def canvas_items(photos, clips, backgrounds, size: int, n: int = SAMPLES, seed: int = SEED) -> list[dict]:
    """``n`` canvases from evenly spread ``photos`` (DevicePhoto), each with a clip (SpeechClip) of a word
    its device supports, on alternating :data:`BACKGROUNDS` (``backgrounds``: photo paths for ``photo``);
    deterministic for a seed."""
    from mbm.config import ImageConfig
    from mbm.preprocess import InputError, read_image

    rng = random.Random(seed)
    side = CANVAS_SCALE * size
    cfg = ImageConfig(size=side)
    by_word: dict[str, list] = {}
    for clip in clips:
        by_word.setdefault(clip.word, []).append(clip)
    chosen = [photos[k] for k in np.linspace(0, len(photos) - 1, min(n, len(photos))).round().astype(int)]
    items = []
    for k, photo in enumerate(chosen):
        words = [w for w in ACTION_TABLE[photo.device] if by_word.get(w)]
        kind = BACKGROUNDS[k % len(BACKGROUNDS)]
        try:
            img = read_image(str(photo.path), cfg)
            back = (read_image(str(backgrounds[rng.randrange(len(backgrounds))]), cfg)
                    if kind == "photo" and backgrounds else rng.randint(*PLAIN_LEVEL))
        except InputError:
            continue
        if not words:
            continue
        clip = rng.choice(by_word[rng.choice(words)])
        canvas, box = device_canvas(img, back, side, rng)
        items.append({"canvas": canvas, "box": box, "audio": str(clip.path), "background": kind,
                      "photo": photo.path.name, "word": clip.word})
    return items


def heldout_items(data_dir: Path, split: str = "heldout", size: int = 192, n: int = SAMPLES,
                  seed: int = SEED) -> list[dict]:
    """:func:`canvas_items` on ``split`` of ``data_dir``: its device photos, real clips and not-device
    photos (the presence head's held-out share for ``heldout``, its training share for ``train``)."""
    from mbm.data.readers import list_device_photos, list_speech_clips, split_photos, split_speech
    from mbm.scenarios.voice_control.image_cache import split_not_devices

    photos, clips = list_device_photos(data_dir), list_speech_clips(data_dir)
    things = split_not_devices(data_dir)
    if split in ("heldout", "train"):
        side = 1 if split == "heldout" else 0
        photos, clips, things = split_photos(photos)[side], split_speech(clips)[side], things[side]
    else:
        things = things[0] + things[1]
    return canvas_items(photos, clips, things, size, n, seed)


def example_items(assets: Path, size: int = 192, seed: int = SEED) -> list[dict]:
    """The shipped examples with a photo and a spoken command, each photo shrunk onto a plain canvas."""
    from PIL import Image

    from mbm.config import ImageConfig
    from mbm.preprocess import prepare_image, read_image

    rng = random.Random(seed)
    side = CANVAS_SCALE * size
    items = []
    for ex in json.loads((Path(assets) / "examples.json").read_text()):
        if not ex.get("image") or not ex.get("audio"):
            continue
        shown = prepare_image(read_image(str(Path(assets) / ex["image"]), ImageConfig(size=size)),
                              ImageConfig(size=size)).shown  # the crop the app shows
        canvas, box = device_canvas(Image.fromarray(shown), rng.randint(*PLAIN_LEVEL), side, rng)
        items.append({"canvas": canvas, "box": box, "audio": str(Path(assets) / ex["audio"]),
                      "background": "plain", "photo": ex["image"], "word": Path(ex["audio"]).stem})
    return items


# The device in the crop the app shows of each shipped "up" example (192 px; boxes drawn by hand on the
# crop, (top, left, bottom, right), disjoint): the visitor's complaint was about these four photos.
EXAMPLE_BOXES = {
    "lamp.jpg": [(0, 15, 75, 183), (75, 80, 192, 115)],  # the shade, then the stem
    "music_player.jpg": [(47, 10, 145, 181)],
    "blinds.jpg": [(5, 17, 168, 165)],  # both curtained windows, rail to sill
    "tv.jpg": [(33, 3, 156, 186)],
}


def example_in_photo_shares(predictor, assets: Path, explain=with_occlusion_maps) -> dict:
    """Per photo of :data:`EXAMPLE_BOXES`: the drawn map's share of mass on its hand-drawn device box(es)
    and the boxes' area share, with the example's spoken command (as the app runs the example)."""
    out = {}
    for ex in json.loads((Path(assets) / "examples.json").read_text()):
        boxes = EXAMPLE_BOXES.get(ex.get("image"))
        if not boxes or not ex.get("audio"):
            continue
        with torch.inference_mode():
            result = explain(predictor, predictor.predict(audio=str(Path(assets) / ex["audio"]),
                                                          image=str(Path(assets) / ex["image"])))
        size = result.inputs.image.shown.shape[0]
        heat = image_attention_map(result.maps["image"], size)
        out[ex["image"]] = {"mass": round(sum(mass_share(heat, b) or 0.0 for b in boxes), 4),
                            "chance": round(sum(_area(b, size) for b in boxes), 4)}
    return out


def measure(predictor, items: list[dict], explain=with_occlusion_maps) -> dict:
    """:func:`measure_canvases` with torch's inference mode (a convenience for scripts)."""
    with torch.inference_mode():
        return measure_canvases(predictor, items, explain)


def map_mass_metrics(predictor, data_dir: Path, split: str = "heldout", assets: Path | None = None,
                     n: int = SAMPLES, seed: int = SEED) -> dict:
    """The ``image_map_mass_*`` keys of the evaluation (module docstring) for ``predictor`` on ``split`` of
    ``data_dir``, and ``image_map_mass_examples`` on the shipped examples in ``assets`` (when given)."""
    size = predictor.cfg.image.size
    out = measure(predictor, heldout_items(Path(data_dir), split, size, n, seed))
    out.pop("shares")
    if assets is not None:
        items = example_items(Path(assets), size, seed)
        ex = measure(predictor, items)
        out["image_map_mass_examples"] = {
            "mass": ex["image_map_mass_on_device"], "chance": ex["image_map_mass_chance"],
            "n": ex["image_map_mass_n"], "rejected": ex["image_map_mass_rejected"],
            "by_example": dict(zip([it["photo"] for it in items], ex["shares"]))}
        inside = example_in_photo_shares(predictor, Path(assets))
        out["image_map_mass_examples_in_photo"] = {
            "mass": mean_or_none([v["mass"] for v in inside.values()]),
            "chance": mean_or_none([v["chance"] for v in inside.values()]), "by_example": inside}
    return out
