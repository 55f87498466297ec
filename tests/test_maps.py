"""Within-input maps: occlusion maps drawn by the app, and the deletion check that tells whether a map is true."""

from __future__ import annotations

import pytest
import torch

from mbm.paths import VOICE_CONTROL_ASSETS
from mbm.scenarios.voice_control.maps import (
    IMAGE_UNITS,
    deletion_ratios,
    explain_sample,
    mask_units,
    occlusion_maps,
    unit_spans,
    unit_weights,
    with_occlusion_maps,
)


def test_units_cover_each_input_and_masking_touches_only_the_unit():
    image = torch.rand(3, 96, 96)
    spans = unit_spans("image", image, 144)  # a 12 x 12 token grid -> 6 x 6 regions of 16 px
    assert IMAGE_UNITS == 6 and len(spans) == 36
    masked = mask_units("image", image, spans, [7])  # row 1, column 1: pixels 16..31
    changed = (masked != image).any(0)
    assert changed[16:32, 16:32].all() and changed.sum() == 16 * 16
    region = masked[:, 16:32, 16:32]
    assert float(region.flatten(1).std(1).max()) < 1e-6  # flat: the detail is gone ...
    assert torch.allclose(region[:, 0, 0], image[:, 16:32, 16:32].mean((1, 2)))  # ... its own mean colour stays
    assert len(unit_spans("image", torch.rand(3, 24, 24), 9)) == 9  # a 3 x 3 token grid keeps its cells
    # token attention summed into the regions: 12 x 12 -> 6 x 6 (2 x 2 blocks), total kept
    w = torch.zeros(144)
    w[0], w[13], w[143] = 0.5, 0.25, 0.25  # tokens (0, 0), (1, 1) -> region 0; (11, 11) -> region 35
    pooled = unit_weights("image", w, 36)
    assert pooled[0] == pytest.approx(0.75) and pooled[35] == pytest.approx(0.25) and pooled.sum() == pytest.approx(1)
    assert torch.equal(unit_weights("audio", w[:25], 25), w[:25])
    mel = torch.rand(40, 101)
    spans = unit_spans("audio", mel, 25)
    assert len(spans) == 25 and spans[0].start == 0 and spans[-1].stop == 101
    quiet = mask_units("audio", mel, spans, [3])
    assert (quiet[:, spans[3]] == mel.min()).all() and torch.equal(quiet[:, spans[4]], mel[:, spans[4]])
    ids = torch.tensor([5, 7, 9])
    assert unit_spans("text", ids, 3) == [0, 1, 2]
    assert mask_units("text", ids, [0, 1, 2], [1]).tolist() == [5, 1, 9]  # the middle word -> <unk>


@pytest.fixture(scope="module")
def shipped():
    from mbm.scenarios.voice_control.predictor import VoiceControlPredictor

    return VoiceControlPredictor.from_checkpoint()


def test_occlusion_maps_have_one_non_negative_number_per_unit(shipped):
    result = shipped.predict(audio=str(VOICE_CONTROL_ASSETS / "up.wav"), image=str(VOICE_CONTROL_ASSETS / "lamp.jpg"),
                             text="make the lamp brighter")
    maps = occlusion_maps(shipped, result)
    assert set(maps) == {"audio", "image", "text"}
    units = {"audio": len(result.token_weights["audio"]), "text": len(result.token_weights["text"]),
             "image": IMAGE_UNITS ** 2}  # the image: one region per token (6 x 6)
    for m, values in maps.items():
        assert len(values) == units[m] and min(values) >= 0, m
    drawn = with_occlusion_maps(shipped, result)
    assert drawn.map_kind == "occlusion" and drawn.maps == maps and drawn.token_weights == result.token_weights
    assert drawn.to_json()["map_kind"] == "occlusion"
    # Without a photo, "lamp" is what names the device: masking it costs the answer, masking "the" does not.
    spoken = shipped.predict(audio=str(VOICE_CONTROL_ASSETS / "up.wav"), text="the lamp")
    text_map = occlusion_maps(shipped, spoken)["text"]
    tokens = spoken.inputs.text.tokens
    assert text_map[tokens.index("lamp")] > 0.1 > text_map[tokens.index("the")], (tokens, text_map)


def test_deletion_drops_and_ratios_of_one_real_input(shipped):
    batch = shipped.batch(shipped.prepare(audio=str(VOICE_CONTROL_ASSETS / "up.wav"),
                                          image=str(VOICE_CONTROL_ASSETS / "lamp.jpg"), text="make the lamp brighter"))
    sample = {m: x[0] for m, x in batch.items()}
    info = explain_sample(shipped.model, shipped.action_index, sample)
    assert set(info) == {"audio", "image", "text"}
    for m, parts in info.items():
        assert parts["occlusion"].shape == parts["attention"].shape, m
        assert all(-1 <= d <= 1 for d in parts["drop"].values()), m
    ratios = deletion_ratios(shipped.model, shipped.action_index, [sample])
    assert ratios["n"] == {"audio": 1, "image": 1, "text": 1}
    for kind in ("attention", "occlusion"):
        for m, parts in info.items():  # one input: the ratio is its top-20 % drop over its random drop
            rand = parts["drop"]["random"]
            if rand <= 1e-6:  # random masking cost nothing: no ratio to take
                assert ratios[kind][m] is None, (kind, m)
            else:
                assert ratios[kind][m] == pytest.approx(parts["drop"][kind] / rand, abs=1e-3), (kind, m)


def test_deletion_ratio_is_the_mean_top_drop_over_the_mean_random_drop(monkeypatch):
    import mbm.scenarios.voice_control.maps

    drops = iter([{"image": {"drop": {"attention": 0.1, "occlusion": 0.4, "random": 0.1}}},
                  {"image": {"drop": {"attention": 0.1, "occlusion": 0.2, "random": 0.1}}}])
    monkeypatch.setattr(mbm.scenarios.voice_control.maps, "explain_sample", lambda *args: next(drops))
    ratios = deletion_ratios(torch.nn.Identity(), None, [{}, {}])
    assert ratios == {"attention": {"image": 1.0}, "occlusion": {"image": 3.0}, "n": {"image": 2},
                      "mean_drop": {"image": {"attention": pytest.approx(0.1), "occlusion": pytest.approx(0.3),
                                              "random": pytest.approx(0.1)}}}
