"""Corruptions for live robustness (mbm.scenarios.voice_control.robustness): level 0 is the identity,
more level = more change."""

from __future__ import annotations

import numpy as np
import pytest

from mbm.preprocess import InputError
from mbm.scenarios.voice_control.robustness import blur_image, noise_audio, occlude_image, predict_corrupted, typo_text

LEVELS = (0.25, 0.5, 1.0)


def _image(seed=0):
    return (np.random.default_rng(seed).random((64, 64, 3)) * 255).astype(np.uint8)


def test_audio_noise(make_tone):
    wave = make_tone(16000, 1.0)
    assert np.array_equal(noise_audio(wave, 0.0), wave)
    changes = [np.abs(noise_audio(wave, lv) - wave).mean() for lv in LEVELS]
    assert changes[0] > 0 and changes == sorted(changes)
    assert np.array_equal(noise_audio(wave, 0.5, seed=3), noise_audio(wave, 0.5, seed=3))  # seeded


def test_image_blur_and_occlusion():
    img = _image()
    assert np.array_equal(blur_image(img, 0.0), img) and np.array_equal(occlude_image(img, 0.0), img)
    for fn in (blur_image, occlude_image):
        changes = [np.abs(fn(img, lv).astype(int) - img).mean() for lv in LEVELS]
        assert changes[0] > 0 and changes == sorted(changes), fn.__name__
        assert fn(img, 0.5).shape == img.shape and fn(img, 0.5).dtype == np.uint8
    assert (occlude_image(img, 1.0) == 128).all()
    assert (occlude_image(img, 0.25) == 128).all(-1).mean() == pytest.approx(0.25, abs=0.02)


def test_text_typos():
    text = "please turn the lamp on now and make it brighter"
    assert typo_text(text, 0.0) == text
    assert typo_text(text, 0.3, seed=1) == typo_text(text, 0.3, seed=1)
    diffs = []
    for lv in LEVELS:
        out = typo_text(text, lv, seed=0)
        diffs.append(sum(a != b for a, b in zip(out, text)) + abs(len(text) - len(out)))
    assert diffs[0] > 0 and diffs[-1] >= diffs[0]
    assert typo_text("channel 5", 1.0).endswith("5")  # digits survive


def test_bad_level():
    with pytest.raises(ValueError):
        typo_text("x", 1.5)


def test_predict_corrupted(voice_predictor, make_tone):
    wave = make_tone(16000, 1.0)
    img = _image()
    clean = predict_corrupted(voice_predictor, audio=(16000, wave), image=img, text="dim the lamp")
    same = voice_predictor.predict(audio=(16000, wave), image=img, text="dim the lamp")
    assert clean.modality_weights == pytest.approx(same.modality_weights)
    r = predict_corrupted(voice_predictor, audio=(16000, wave), image=img, text="dim the lamp",
                          audio_noise=1.0, image_blur=0.5, image_occlusion=0.3, text_typos=0.0, use_text=False)
    assert r.modality_weights["text"] == 0.0 and r.inputs.text is None
    assert not np.array_equal(r.inputs.image.shown, same.inputs.image.shown)
    assert not np.allclose(r.inputs.audio.waveform, same.inputs.audio.waveform)
    assert any("switched off: text" in n for n in r.inputs.notes)
    with pytest.raises(InputError):
        predict_corrupted(voice_predictor, audio=(16000, wave), use_audio=False)


def test_typos_that_leave_no_known_word_drop_the_text(voice_predictor, make_tone):
    r = predict_corrupted(voice_predictor, audio=(16000, make_tone(16000, 1.0)), text="dim the lamp", text_typos=1.0)
    assert r.inputs.text is None and r.modality_weights["text"] == 0.0
    assert any("no known word" in n for n in r.inputs.notes)
