"""The one path from decoded audio to a model's signal, the one mel spectrogram, the one text-to-speech call."""

from __future__ import annotations

import json
import os
import stat
import sys

import numpy as np
import pytest
import torch

from mbm.data import tts
from mbm.errors import InputError
from mbm.preprocess import mel_transform
from mbm.safe_media import mono_at


def test_mono_at_mixes_scales_and_resamples():
    t = np.arange(8000) / 8000
    left = (np.sin(2 * np.pi * 440 * t) * 16384).astype(np.int16)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)  # (frames, 2) int16 at 8 kHz
    mono = mono_at(stereo, 8000, 16000)
    assert mono.dtype == np.float32 and mono.shape == (16000,)
    assert abs(float(np.abs(mono).max()) - 0.25) < 0.01  # int16 half scale, averaged with silence
    assert np.array_equal(mono_at(mono[:, None], 16000, 16000), mono)  # same rate: untouched


@pytest.mark.parametrize(("samples", "rate", "message"), [
    (np.zeros((0, 1), np.float32), 16000, "the voice clip is empty"),
    (np.array([[0.1], [np.nan]], np.float32), 16000, "the voice clip holds invalid"),
    (np.zeros((100, 1), np.float32), 1000, "unsupported sample rate 1000 Hz"),
])
def test_mono_at_refuses_with_a_message(samples, rate, message):
    with pytest.raises(InputError, match=message):
        mono_at(samples, rate, 16000, what="the voice clip")


def test_the_speaker_encoders_mel_is_librosas():
    librosa = pytest.importorskip("librosa")  # pinned in requirements.txt: always there in CI
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    ours = mel_transform(16000, 400, None, 160, 40, librosa_filters=True)(torch.from_numpy(wave)).numpy()
    theirs = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=400, hop_length=160, n_mels=40)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-5 * theirs.max()


@pytest.fixture
def fake_engines(tmp_path, monkeypatch):
    """espeak-ng and flite stand-ins on PATH that record their arguments and write a short WAV."""
    log = tmp_path / "argv.jsonl"
    script = f"""#!{sys.executable}
import json, sys
import numpy as np, soundfile as sf
args = sys.argv[1:]
out = args[args.index("-w" if "-w" in args else "-o") + 1]
sf.write(out, np.full(2205, 0.1, np.float32), 22050)
open({str(log)!r}, "a").write(json.dumps([sys.argv[0].rsplit("/", 1)[-1], *args]) + "\\n")
"""
    for name in ("espeak-ng", "flite"):
        exe = tmp_path / name
        exe.write_text(script)
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return lambda: [json.loads(line) for line in log.read_text().splitlines()]


def test_one_text_to_speech_call_serves_training_words_and_search_phrases(fake_engines, tmp_path):
    tts.render(tts.Utterance("up", "espeak", "en-us+m3", 0.8, 40), tmp_path / "words")
    tts.render(tts.Utterance("up", "flite", "kal", 1.25, 110), tmp_path / "words")
    tts.speak("a red fan", "espeak-ng", "en-gb", tmp_path / "a.wav")
    tts.speak("a red fan", "flite", "awb", tmp_path / "b.wav")
    calls = fake_engines()
    assert calls[0][:7] == ["espeak-ng", "-v", "en-us+m3", "-s", "218", "-p", "40"] and calls[0][-1] == "up"
    assert calls[1][:7] == ["flite", "-voice", "kal", "--setf", "duration_stretch=1.25", "--setf",
                            "int_f0_target_mean=110"]
    assert calls[2] == ["espeak-ng", "-v", "en-gb", "-w", str(tmp_path / "a.wav"), "a red fan"]  # engine's own rate
    assert calls[3] == ["flite", "-voice", "awb", "-t", "a red fan", "-o", str(tmp_path / "b.wav")]
    assert sorted(p.name for p in (tmp_path / "words" / "up").iterdir()) == [
        "espeak-en-us_m3-s0.80-p40.wav", "flite-kal-s1.25-p110.wav"]
    with pytest.raises(ValueError, match="unknown text-to-speech engine"):
        tts.speak("x", "say", "alex", tmp_path / "c.wav")
