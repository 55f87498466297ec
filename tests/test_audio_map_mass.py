"""The audio map's mass inside the spoken word (mbm.scenarios.voice_control.audio_map_mass): no data needed."""

from __future__ import annotations

import numpy as np
import pytest

from mbm.paths import VOICE_CONTROL_ASSETS
from mbm.scenarios.voice_control.audio_map_mass import MARGIN_S, share_inside, speech_span


def test_the_span_is_where_the_sound_is_with_its_margins():
    rate = 16000
    wave = np.zeros(rate, np.float32)  # one second: silence, a word from 0.40 to 0.60 s, silence
    t = np.arange(int(0.2 * rate)) / rate
    wave[int(0.4 * rate):int(0.6 * rate)] = 0.5 * np.sin(2 * np.pi * 220 * t)
    start, end = speech_span(wave, rate)
    assert start == pytest.approx(0.4 - MARGIN_S[0], abs=0.03)  # a 25 ms frame reaching into the word counts
    assert end == pytest.approx(0.6 + MARGIN_S[1], abs=0.03)


def test_share_inside_counts_token_overlap():
    assert share_inside([0, 0, 1, 1, 0, 0], (2 / 6, 4 / 6)) == pytest.approx(1.0)
    assert share_inside([1] * 10, (0.2, 0.5)) == pytest.approx(0.3)  # a flat map scores the span's length
    assert share_inside([1, 0, 0, 0], (0.125, 1.0)) == pytest.approx(0.5)  # half of the first token is inside
    assert share_inside([0, 0, 0], (0.0, 1.0)) is None  # nothing drawn
    assert share_inside([-1, 2, 0], (0.0, 1 / 3)) == 0.0  # negative values are not mass


def test_a_shipped_example_map_falls_mostly_on_the_word():
    """The lamp example's 'up' through the app's path: most of the drawn map inside the spoken span."""
    from mbm.scenarios.voice_control.audio_map_mass import audio_map_metrics
    from mbm.scenarios.voice_control.predictor import VoiceControlPredictor

    class Item:
        def __init__(self, path, source):
            self.path, self.source = path, source

    predictor = VoiceControlPredictor.from_checkpoint()
    out = audio_map_metrics(predictor, [(Item(VOICE_CONTROL_ASSETS / "up.wav", "example"),
                                         Item(VOICE_CONTROL_ASSETS / "lamp.jpg", "example"))])
    assert out["audio_map_in_speech_n"] + out["audio_map_in_speech_flat"] + out["audio_map_in_speech_noisy"] == 1
    if out["audio_map_in_speech_n"]:
        assert 0 <= out["audio_map_in_speech_chance"] <= 1
        assert out["audio_map_in_speech_share"] >= out["audio_map_in_speech_chance"], out


def test_noise_as_loud_as_the_word_has_no_span():
    rng = np.random.default_rng(0)
    assert speech_span((0.3 * rng.standard_normal(16000)).astype(np.float32), 16000) is None


def test_the_evaluation_tab_says_where_the_audio_map_falls():
    from mbm.ui.evaluation import _maps

    text = _maps({"audio_map_in_speech_share": 0.9971, "audio_map_in_speech_chance": 0.671})
    assert "99.7% of the audio map falls inside the spoken word (67% by chance" in text, text
