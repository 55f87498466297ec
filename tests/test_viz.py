"""Maps, figures and "what the model sees" views (mbm.viz), and the weight/effect disagreement flag."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from mbm import eval_figures, figures, viz
from mbm.explain import disagreement, effects_table, modality_effects
from mbm.scenarios.voice_control.predictor import PreparedInputs, VoiceControlResult


def test_image_map_shape_grid_and_normalisation():
    w = np.arange(64, dtype=float) / 2016  # an 8x8 grid, row-major, sums to 1
    grid = viz.image_attention_grid(w)
    assert grid.shape == (8, 8) and grid.max() == pytest.approx(1.0) and grid.min() >= 0
    assert grid[0, 1] > grid[0, 0] and grid[1, 0] > grid[0, 7]  # row-major order
    heat = viz.image_attention_map(w, 64)
    assert heat.shape == (64, 64) and heat.max() == pytest.approx(1.0) and heat.min() >= 0
    blocks = viz.image_attention_map(w, 64, smooth=False)
    assert blocks[0, 0] == blocks[7, 7] == grid[0, 0]  # one cell = 8x8 pixels
    assert blocks[63, 63] == pytest.approx(1.0)
    over = viz.image_overlay(np.zeros((64, 64, 3), np.uint8), w)
    assert over.shape == (256, 256, 3) and over.dtype == np.uint8  # enlarged to about viz.SHOWN_SIDE
    assert viz.image_overlay(np.zeros((192, 192, 3), np.uint8), w).shape == (192, 192, 3)  # large enough
    with pytest.raises(ValueError):
        viz.image_attention_grid(np.ones(10))


def test_text_highlights_pairs_normalised():
    pairs = viz.text_highlights(["dim", "the", "lamp"], [0.5, 0.1, 0.4])
    assert [t for t, _ in pairs] == ["dim", "the", "lamp"]
    assert max(w for _, w in pairs) == pytest.approx(1.0)
    assert pairs[1][1] == pytest.approx(0.2)
    spaced = viz.text_highlights(["a", "b"], [1, 1], separator=" ")
    assert spaced == [("a", 1.0), (" ", None), ("b", 1.0)]


def test_audio_frames_cover_clip_evenly():
    w = np.zeros(25)
    w[0] = 1.0
    frames = viz.audio_frame_weights(w, 101)
    assert frames.shape == (101,) and frames.max() == pytest.approx(1.0)
    assert frames[:4].min() == 1.0 and frames[5:].max() == 0.0  # token 0 covers frames 0..4.04
    assert viz.audio_frame_weights(np.ones(25) / 25, 101).min() == pytest.approx(1.0)


def test_absent_modality_gives_no_map():
    assert viz.image_attention_map(None, 64) is None
    assert viz.image_overlay(None, None) is None
    assert viz.text_highlights(None, None) is None
    assert viz.audio_frame_weights(None, 101) is None
    assert viz.audio_figure(None, None) is None


def test_maps_of_a_prediction(voice_predictor, make_tone, make_image):
    r = voice_predictor.predict(audio=(16000, make_tone(16000, 1.0)), image=make_image(64, 64))
    m = viz.maps(r)
    s = r.inputs.image.shown.shape[0]
    assert m["image"].shape == (s, s) and m["image"].max() == pytest.approx(1.0)
    assert m["audio"].shape == (r.inputs.audio.mel.shape[-1],)
    assert m["text"] is None  # no text given: no map
    view = viz.model_view(r)
    assert view["tokens"] is None and view["image"].shape == (s, s, 3) and view["mel_image"].dtype == np.uint8
    fig = figures.explanation_figure(r, modality_effects(r))
    assert isinstance(fig, Figure)
    assert figures.figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(viz.audio_figure(r.inputs.audio.waveform, r.inputs.audio.mel, r.token_weights["audio"]), Figure)


def test_text_only_prediction_has_only_text_map(voice_predictor):
    r = voice_predictor.predict(text="dim the lamp")
    m = viz.maps(r)
    assert m["image"] is None and m["audio"] is None and m["image_overlay"] is None
    assert [t for t, _ in m["text"]] == r.inputs.text.tokens
    assert isinstance(figures.explanation_figure(r), Figure)


# --- the disagreement flag ------------------------------------------------------------------------

def test_disagreement_fires_when_orders_are_opposite():
    flag, pairs = disagreement({"audio": 0.7, "image": 0.3}, {"audio": 0.01, "image": 0.6})
    assert flag and pairs == [("audio", "image")]


def test_disagreement_silent_when_orders_agree_or_tie():
    assert not disagreement({"audio": 0.7, "image": 0.3}, {"audio": 0.6, "image": 0.01})[0]
    # within the margins: a tie, not a disagreement
    assert not disagreement({"audio": 0.52, "image": 0.48}, {"audio": 0.10, "image": 0.30})[0]
    assert not disagreement({"audio": 0.7, "image": 0.3}, {"audio": 0.20, "image": 0.23})[0]
    assert not disagreement({"audio": 1.0}, {"audio": 0.5})[0]


def _result(weights, confidence, without) -> VoiceControlResult:
    return VoiceControlResult(action="lamp → brighter", confidence=confidence, top=[("lamp → brighter", confidence)],
                              device=("lamp", 0.9), word=("up", 0.9), modality_weights=weights, token_weights={},
                              heard=None, sees=None, reads=None, confidence_without=without,
                              inputs=PreparedInputs(), warnings=[])


def test_modality_effects_of_a_constructed_result():
    # text holds most weight, but removing it changes nothing while removing the image ruins the answer
    r = _result({"audio": 0.2, "image": 0.2, "text": 0.6}, 0.9, {"audio": 0.85, "image": 0.1, "text": 0.88})
    e = modality_effects(r)
    assert e.drop == pytest.approx({"audio": 0.05, "image": 0.8, "text": 0.02})
    assert e.disagree and ("text", "image") in e.pairs
    assert e.to_json()["disagree"] is True
    assert effects_table(e)[2][0] == "text"
    ok = modality_effects(_result({"audio": 0.2, "image": 0.7, "text": 0.1}, 0.9,
                                  {"audio": 0.8, "image": 0.2, "text": 0.9}))
    assert not ok.disagree
    alone = modality_effects(_result({"audio": 1.0, "image": 0.0, "text": 0.0}, 0.9, {}))
    assert not alone.disagree and alone.drop == {}
    assert isinstance(figures.weights_figure(r.modality_weights, e), Figure)


# --- the Evaluation tab ---------------------------------------------------------------------------

def test_evaluation_figures_from_a_results_dict(tmp_path):
    results = {"action_accuracy": 0.8, "late_fusion_action_accuracy": 0.4, "n_pairs": 12, "n_triples": 5,
               "action_accuracy_by_subset": {"audio": 0.2, "audio+image": 0.8},
               "confusion": {"device": {"labels": ["a", "b"], "matrix": [[3, 1], [0, 4]]}},
               "robustness": {"levels": [0, 0.5, 1], "n": 8, "audio_noise": {"accuracy": [0.8, 0.6, 0.1]},
                              "text_typos": {"accuracy": [0.8, 0.7, 0.5]}}}
    assert isinstance(eval_figures.robustness_figure(results), Figure)
    assert isinstance(eval_figures.confusion_figure(results, "device"), Figure)
    assert eval_figures.confusion_figure(results, "word") is None and eval_figures.robustness_figure({}) is None
    table = eval_figures.accuracy_table(results)
    assert table[0] == ["our fusion: speech + photo (12 pairs)", 0.8]
    assert ["on the 5 sets, speech only", 0.2] in table and ["on the 5 sets, speech + photo only", 0.8] in table
    assert eval_figures.load_eval_results(tmp_path / "missing.json") is None


def test_figures_as_svg_follow_the_page_theme():
    """figure_svg: transparent, ink (black) becomes the page's text colour, legends take the page's
    background, heat-map labels keep their fixed colours, and nothing restyles the rest of the page."""
    import re

    results = {"confusion": {"device": {"labels": ["a", "b"], "matrix": [[3, 1], [0, 4]]}},
               "robustness": {"levels": [0, 0.5, 1], "n": 8, "audio_noise": {"accuracy": [0.8, 0.6, 0.1]}}}
    for fig in (eval_figures.robustness_figure(results), eval_figures.confusion_figure(results, "device"),
                figures.weights_figure({"audio": 0.7, "image": 0.3, "text": 0.0})):
        svg = figures.figure_svg(fig, "a <chart>")
        assert svg.startswith("<svg ") and 'aria-label="a &lt;chart&gt;"' in svg and "<?xml" not in svg
        assert "<text" in svg, "text must stay text (to take the page colour)"
        assert "#000000" not in svg and "currentColor" in svg
        assert "<style" not in svg and not re.search(r"fill: ?#fff(fff)?\b", svg.split('class="on-colour"')[0])
        assert re.search(r'<g id="(figure|axes|text)_', svg) is None  # ids repeat across figures: dropped
    confusion = figures.figure_svg(eval_figures.confusion_figure(results, "device"))
    assert confusion.count('<g class="on-colour">') == 3  # the three non-zero counts
    assert figures.ON_LIGHT in confusion and "#ffffff" in confusion  # dark on light cells, white on dark
    # a legend box takes the page's background; the robustness legend has none (it sits under the axes)
    legend = figures.figure_svg(eval_figures.robustness_figure(results))
    assert figures.PAPER not in legend and "audio noise" in legend
    framed = Figure()
    framed.subplots().plot([0, 1], [0, 1], label="a line")
    framed.axes[0].legend()
    assert "var(--background-fill-primary" in figures.figure_svg(framed)


def test_shipped_results_file_if_present():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "assets" / "voice_control" / "eval_results.json"
    if not path.is_file():
        pytest.skip("no shipped results file")
    results = eval_figures.load_eval_results(path)
    for key in ("action_accuracy", "late_fusion_action_accuracy", "weight_effect_spearman", "noised_weight_drop",
                "action_accuracy_by_subset", "confusion", "robustness"):
        assert key in results, key
    assert isinstance(eval_figures.robustness_figure(results), Figure)


def test_explain_prediction_bundle(voice_predictor, make_image):
    import json

    from mbm.explain import explain_prediction

    r = voice_predictor.predict(image=make_image(64, 64), text="turn on the fan")
    out = explain_prediction(r)
    assert out["audio_figure"] is None  # no audio: no map
    assert out["image_overlay"].dtype == np.uint8 and isinstance(out["figure"], Figure)
    assert [t for t, w in out["text_highlights"] if w is not None] == r.inputs.text.tokens
    assert isinstance(out["flag"], bool) and out["flag_text"]
    json.dumps(out["json"])  # JSON-ready for gr.JSON and the API
