"""The image map's mass on the device (mbm.scenarios.voice_control.maps.mass_share, mbm.scenarios.voice_control.map_mass): no data needed."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from mbm.scenarios.voice_control.map_mass import DEVICE_SIDE, device_canvas, measure_canvases, scaled_box
from mbm.scenarios.voice_control.maps import mask_units, mass_share, unit_spans
from mbm.viz import image_attention_map


def test_mass_share_has_the_known_answer():
    heat = np.zeros((10, 10))
    heat[2:5, 3:7] = 1.0  # 12 inside the box
    heat[8, 8] = 3.0  # 3 outside
    assert mass_share(heat, (2, 3, 5, 7)) == pytest.approx(12 / 15)
    assert mass_share(heat, (2, 3, 5, 6.5)) == pytest.approx(10.5 / 15)  # half a column of pixels: half their mass
    assert mass_share(heat, (0, 0, 10, 10)) == pytest.approx(1.0)
    assert mass_share(heat, (8, 8, 9, 9)) == pytest.approx(3 / 15)
    heat[0, 0] = -5.0  # negative values count as zero
    assert mass_share(heat, (2, 3, 5, 7)) == pytest.approx(12 / 15)
    assert mass_share(np.zeros((4, 4)), (0, 0, 2, 2)) is None  # nothing drawn: no share


def test_a_drawn_map_on_the_box_scores_near_one_and_a_uniform_one_the_area_share():
    box = (32, 64, 128, 160)  # rows 1..3, columns 2..4 of a 6 x 6 grid at 192 px; 0.25 of the crop
    grid = np.zeros((6, 6))
    grid[1:4, 2:5] = 1.0
    on = mass_share(image_attention_map(grid.flatten(), 192), box)
    assert on > 0.8  # the drawn (bilinear) map leaks a little past the cells' edges, no more
    flat = mass_share(image_attention_map(np.ones(36), 192), box)
    assert flat == pytest.approx(0.25)
    off = np.zeros((6, 6))
    off[5, 0] = 1.0  # a corner far from the box
    assert mass_share(image_attention_map(off.flatten(), 192), box) < 0.05


def test_device_canvas_puts_the_photo_in_its_box_on_the_background():
    photo = Image.fromarray(np.full((60, 120, 3), 200, dtype=np.uint8))  # a 2:1 photo
    canvas, (top, left, bottom, right) = device_canvas(photo, 40, 384, random.Random(3))
    assert canvas.shape == (384, 384, 3)
    assert 0 <= top < bottom <= 384 and 0 <= left < right <= 384
    assert DEVICE_SIDE[0] * 384 - 1 <= right - left <= DEVICE_SIDE[1] * 384 + 1  # the longer side
    assert abs((right - left) - 2 * (bottom - top)) <= 2  # the aspect ratio kept
    assert (canvas[top:bottom, left:right] == 200).all()
    inside = np.zeros((384, 384), dtype=bool)
    inside[top:bottom, left:right] = True
    assert (canvas[~inside] == 40).all()
    again, box = device_canvas(photo, 40, 384, random.Random(3))
    assert np.array_equal(again, canvas) and box == (top, left, bottom, right)  # seeded
    assert scaled_box(box, 384, 192) == tuple(v / 2 for v in box)


def _stub_predictor(size: int = 192):
    """A predictor whose answer has an image input and no map yet (``explain`` draws one)."""
    def predict(audio=None, image=None, text=None):
        shown = np.zeros((size, size, 3), dtype=np.uint8)
        return SimpleNamespace(inputs=SimpleNamespace(image=SimpleNamespace(shown=shown)), maps={})

    return SimpleNamespace(cfg=SimpleNamespace(image=SimpleNamespace(size=size)), predict=predict)


def test_measure_canvases_scores_a_map_on_the_device_above_a_blind_one():
    box = (64, 128, 256, 320)  # canvas pixels (384): rows 1..3, columns 2..4 of the 6 x 6 grid at 192
    items = [{"canvas": np.zeros((384, 384, 3), dtype=np.uint8), "box": box, "background": "plain"}] * 3
    on = np.zeros((6, 6))
    on[1:4, 2:5] = 1.0

    def draw(values):
        return lambda predictor, result: SimpleNamespace(inputs=result.inputs, maps={"image": list(values)})

    good = measure_canvases(_stub_predictor(), items, draw(on.flatten()))
    blind = measure_canvases(_stub_predictor(), items, draw(np.ones(36)))
    empty = measure_canvases(_stub_predictor(), items, draw(np.zeros(36)))
    assert good["image_map_mass_chance"] == pytest.approx(0.25) and good["image_map_mass_n"] == 3
    assert good["image_map_mass_on_device"] > 0.8
    assert blind["image_map_mass_on_device"] == pytest.approx(0.25, abs=1e-3)
    assert empty["image_map_mass_on_device"] == pytest.approx(0.25, abs=1e-3)  # nothing drawn counts as chance
    assert good["image_map_mass_by_background"]["plain"]["n"] == 3


def test_masking_a_flat_background_region_beside_the_device_changes_nothing():
    """The mask of a region is made of that region's own pixels: the device's colours never bleed into
    the background beside it (a blur of the whole photo did, so background there seemed to matter)."""
    image = torch.full((3, 192, 192), -0.4)
    image[:, 32:64, 64:96] = torch.rand(3, 32, 32)  # a textured "device" in region (1, 2) of the 6 x 6 grid
    spans = unit_spans("image", image, 36)
    beside = [1 * 6 + 1, 1 * 6 + 3, 0 * 6 + 2, 2 * 6 + 2]  # the four flat regions touching it
    assert torch.allclose(mask_units("image", image, spans, beside), image, atol=1e-6)  # (float rounding only)
    masked = mask_units("image", image, spans, [1 * 6 + 2])
    assert not torch.equal(masked, image) and torch.equal(masked[:, :32], image[:, :32])


def test_the_evaluation_tab_says_where_the_image_map_falls():
    from mbm.ui.evaluation import _maps, evaluation_summary

    r = {"map_deletion_ratio": {"audio": 4.0, "image": 3.14, "text": 9.0}, "image_map_mass_on_device": 0.634,
         "image_map_mass_chance": 0.281}
    text = _maps(r)
    assert "3.1×" in text and "63%" in text and "28%" in text
    assert _maps(r) in evaluation_summary(r)
    assert _maps({}) == "not in this results file."
    assert "map_mass.py" in _maps(r | {"map_mass_command": "python tools/experiments/real_photos_scripts/map_mass.py"})
