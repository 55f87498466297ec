"""Parts of the word model's failure report (mbm.scenarios.voice_control.speech_eval) on made-up audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mbm.scenarios.voice_control.speech_eval import babble, more_clips, speech_span, window_covers, with_babble

SR = 16000


def burst(start_s: float, length_s: float, total_s: float = 2.0, seed: int = 0) -> np.ndarray:
    """A voiced-like burst (harmonics of 150 Hz) in a faint noise floor."""
    rng = np.random.default_rng(seed)
    x = 1e-4 * rng.standard_normal(int(total_s * SR)).astype(np.float32)
    t = np.arange(int(length_s * SR)) / SR
    voiced = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 12)) * 0.3
    a = int(start_s * SR)
    x[a:a + len(t)] += voiced.astype(np.float32)
    return x


def test_speech_span_finds_the_burst():
    a, b = speech_span(burst(0.8, 0.5), SR)
    assert abs(a / SR - 0.8) < 0.15 and abs(b / SR - 1.3) < 0.15


def test_speech_span_of_silence_is_the_whole_clip():
    assert speech_span(np.zeros(SR, np.float32), SR) == (0, SR)


@pytest.mark.parametrize(("start", "expected"), [(0, True), (8000, True), (12000, False), (30000, False)])
def test_window_covers(start, expected):
    # the word spans samples 10000..16000; a 16000-sample window from `start`
    assert window_covers((10000, 16000), start, 16000) is expected


def test_babble_is_other_speakers_and_the_snr_is_what_was_asked():
    rng = np.random.default_rng(1)
    waves = torch.from_numpy(rng.standard_normal((6, SR)).astype(np.float32))
    speakers = ["a", "a", "b", "c", "d", "e"]
    n0 = babble(waves, 0, speakers)
    others = [j for j in range(6) if speakers[j] != "a"]
    assert any(torch.allclose(n0, waves[[i, j, k]].sum(0)) for i in others for j in others for k in others)
    for snr in (20.0, 5.0):
        noisy = with_babble(waves, speakers, snr)
        measured = 10 * torch.log10((waves ** 2).sum(1) / ((noisy - waves) ** 2).sum(1))
        assert torch.allclose(measured, torch.full((6,), snr), atol=0.01)


def test_more_clips_reads_word_and_speaker(tmp_path):
    folder = tmp_path / "speech_commands_more" / "up"
    folder.mkdir(parents=True)
    (folder / "sc_ab12cd34_nohash_0.wav").write_bytes(b"")
    (folder / "notes.txt").write_text("x")
    clips = more_clips(tmp_path)
    assert [(c.word, c.speaker, c.source) for c in clips] == [("up", "ab12cd34", "speech_commands_more")]


def test_a_folder_without_clips_gets_a_message_not_a_traceback(tmp_path, capsys):
    from mbm.scenarios.voice_control.speech_eval import main

    with pytest.raises(SystemExit) as stop:
        main(["--data", str(tmp_path), "--json"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "holds no speech clips" in err and "Traceback" not in err


def test_results_gets_the_heldout_report_beside_the_keys_it_had(tmp_path, capsys):
    """``--results`` adds ``real_speech`` to the app's results file and keeps the other commands' keys."""
    import json

    from mbm.scenarios.voice_control.speech_eval import main
    from tests.test_data import build_fake_data

    build_fake_data(tmp_path / "data")
    results = tmp_path / "eval_results.json"
    results.write_text(json.dumps({"action_accuracy": 0.5}))
    main(["--data", str(tmp_path / "data"), "--json", "--results", str(results)])
    printed = json.loads(capsys.readouterr().out)
    written = json.loads(results.read_text())
    assert written["action_accuracy"] == 0.5 and written["real_speech"] == printed
    assert printed["n_clips"] > 0 and 0 <= printed["word_accuracy_real"] <= 1
    assert set(printed["word_accuracy_babble_snr"]) == {"20 dB", "10 dB", "5 dB"}
    assert "speech_eval" in written["real_speech_command"]
    with pytest.raises(SystemExit) as stop:  # validation numbers are for choosing, never the app's
        main(["--data", str(tmp_path / "data"), "--split", "validation", "--results", str(results)])
    assert stop.value.code == 2


def test_the_evaluation_tab_says_where_the_word_fails():
    from mbm.ui.evaluation import _real_speech, evaluation_summary

    speech = {"n_clips": 940, "word_accuracy_real": 0.931,
              "word_accuracy_by_sample_rate": {"8000 Hz": {"accuracy": 0.95, "n": 500},
                                               "16000 Hz": {"accuracy": 0.9, "n": 440}},
              "word_accuracy_babble_snr": {"20 dB": 0.88, "10 dB": 0.71, "5 dB": 0.52},
              "word_accuracy_resampled_8khz": 0.87, "word_confusion_pairs": [{"said": "off", "heard": "up", "n": 7}]}
    r = {"real_speech": speech, "real_speech_command": "python -m x"}
    text = _real_speech(r)
    for part in ("940 clips", "93%", "8000 Hz 95% (500 clips)", "71% at 10 dB", "87%", "'off' heard as 'up' (7)",
                 "python -m x"):
        assert part in text, part
    assert text in evaluation_summary(r)
    assert _real_speech({}) == ""
