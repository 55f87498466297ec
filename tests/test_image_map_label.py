"""The image map's caption says when no one region decides the answer (the overlay is scaled to its maximum)."""

from __future__ import annotations

from types import SimpleNamespace

from mbm.ui.voice_control_handlers import FLAT_IMAGE_MAP, IMAGE_MAP_LABEL, image_map_label


def result(lost, kind="occlusion"):
    return SimpleNamespace(maps={"image": lost}, map_kind=kind)


def test_a_region_that_matters_keeps_the_usual_caption():
    assert image_map_label(result([0.001] * 35 + [0.3])) == IMAGE_MAP_LABEL


def test_no_region_that_matters_is_said():
    label = image_map_label(result([FLAT_IMAGE_MAP / 4] * 36))
    assert label != IMAGE_MAP_LABEL and "no region decides" in label and "2%" in label


def test_attention_maps_and_absent_images_keep_the_usual_caption():
    assert image_map_label(result([0.001] * 36, kind="attention")) == IMAGE_MAP_LABEL
    assert image_map_label(SimpleNamespace(maps={}, map_kind="occlusion")) == IMAGE_MAP_LABEL
