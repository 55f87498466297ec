"""VoiceControlPredictor on a tiny random-weight checkpoint: any inputs in, plain and honest results out."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from PIL import Image

from mbm.config import MODALITIES
from mbm.preprocess import InputError
from mbm.scenarios.voice_control.predictor import VoiceControlPredictor, VoiceControlResult
from mbm.scenarios.voice_control.spec import ACTIONS, DEVICES, WORDS

SUBSETS = [s for r in (1, 2, 3) for s in itertools.combinations(MODALITIES, r)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """One usable input of each kind, as a user would upload them (file paths), plus a text."""
    import io

    import soundfile as sf

    folder = tmp_path_factory.mktemp("predictor_inputs")
    t = np.arange(16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) * np.hanning(16000)).astype(np.float32)
    audio = folder / "command.wav"
    sf.write(audio, wave, 16000)
    rng = np.random.default_rng(0)
    image = folder / "device.png"
    Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(image)
    buf = io.BytesIO()
    sf.write(buf, wave, 16000, format="WAV")
    return {"audio": str(audio), "image": str(image), "text": "turn on the lamp", "audio_bytes": buf.getvalue()}


def check_result(result: VoiceControlResult, present: set[str]) -> None:
    assert isinstance(result, VoiceControlResult)
    assert result.action in ACTIONS
    # Modality weights: all three listed, sum to 1, absent exactly 0, present > 0.
    w = result.modality_weights
    assert set(w) == set(MODALITIES)
    assert math.isclose(sum(w.values()), 1.0, abs_tol=1e-5), w
    for m in MODALITIES:
        if m in present:
            assert w[m] > 0, f"present {m} weighs 0: {w}"
        else:
            assert w[m] == 0.0, f"absent {m} must weigh exactly 0: {w}"
    assert set(result.inputs.present) == present
    # Top 5: sorted, probabilities, the first is the action.
    probs = [p for _, p in result.top]
    assert len(result.top) == 5 and len({a for a, _ in result.top}) == 5
    assert probs == sorted(probs, reverse=True)
    assert all(0.0 <= p <= 1.0 + 1e-6 for p in probs) and sum(probs) <= 1.0 + 1e-5
    assert result.top[0] == (result.action, result.confidence)
    assert result.device[0] in DEVICES and result.word[0] in WORDS
    assert 0.0 <= result.device[1] <= 1.0 and 0.0 <= result.word[1] <= 1.0
    # Where inside each present modality the model looked.
    assert set(result.token_weights) == present
    for m, tw in result.token_weights.items():
        assert math.isclose(sum(tw), 1.0, abs_tol=1e-4), (m, tw)
    # What each input said alone, and leave-one-out confidences when there is more than one input.
    assert (result.heard is not None) == ("audio" in present)
    assert (result.sees is not None) == ("image" in present)
    assert (result.reads is not None) == ("text" in present)
    assert set(result.confidence_without) == (present if len(present) > 1 else set())
    assert all(0.0 <= p <= 1.0 + 1e-6 for p in result.confidence_without.values())


def test_loads_what_train_writes(voice_predictor):
    assert voice_predictor.actions == list(ACTIONS)
    assert voice_predictor.labels == {"device": list(DEVICES), "word": list(WORDS)}
    assert not voice_predictor.model.training


@pytest.mark.parametrize("subset", SUBSETS, ids="+".join)
def test_any_subset_of_inputs(voice_predictor, inputs, subset):
    result = voice_predictor.predict(**{m: inputs[m] for m in subset})
    check_result(result, set(subset))
    assert result.warnings == []


def test_same_inputs_same_answer(voice_predictor, inputs):
    a = voice_predictor.predict(audio=inputs["audio"], image=inputs["image"])
    b = voice_predictor.predict(audio=inputs["audio_bytes"], image=Image.open(inputs["image"]))
    assert a.action == b.action
    assert [x for x, _ in a.top] == [x for x, _ in b.top]
    assert [p for _, p in a.top] == pytest.approx([p for _, p in b.top], abs=1e-5)
    assert a.modality_weights == pytest.approx(b.modality_weights, abs=1e-6)


def test_microphone_tuple_is_accepted(voice_predictor):
    t = np.arange(48000) / 48000
    pcm = (12000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    check_result(voice_predictor.predict(audio=(48000, np.stack([pcm, pcm], 1))), {"audio"})


def test_no_input_is_an_input_error(voice_predictor):
    with pytest.raises(InputError, match="no input was given"):
        voice_predictor.predict()
    with pytest.raises(InputError, match="no input was given"):
        voice_predictor.predict(text="   ")


def test_silent_audio_alone_is_an_input_error(voice_predictor):
    with pytest.raises(InputError, match="silent") as e:
        voice_predictor.predict(audio=(16000, np.zeros(16000, np.float32)))
    assert "Nothing usable" in str(e.value)


def test_unreadable_inputs_alone_are_an_input_error(voice_predictor, tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_text("not a photo")
    with pytest.raises(InputError) as e:
        voice_predictor.predict(audio=b"not audio at all" * 20, image=str(fake), text="🎵🎵")
    msg = str(e.value)
    assert "Nothing usable" in msg
    assert "audio:" in msg and "image:" in msg and "text:" in msg, msg


def test_flat_colour_image_alone_is_an_input_error(voice_predictor):
    with pytest.raises(InputError, match="flat colour"):
        voice_predictor.predict(image=Image.new("RGB", (64, 64), (0, 0, 0)))


def test_bad_image_with_good_audio_predicts_with_a_warning(voice_predictor, inputs, tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_text("not a photo")
    result = voice_predictor.predict(audio=inputs["audio"], image=str(fake))
    check_result(result, {"audio"})
    assert len(result.warnings) == 1 and result.warnings[0].startswith("image:"), result.warnings
    assert "not an image" in result.warnings[0]


def test_silent_audio_with_a_photo_is_ignored_with_a_warning(voice_predictor, inputs):
    result = voice_predictor.predict(audio=(16000, np.zeros(8000, np.float32)), image=inputs["image"])
    check_result(result, {"image"})
    assert any(w.startswith("audio:") and "silent" in w for w in result.warnings), result.warnings


def test_preprocessing_notes_reach_the_result(voice_predictor, inputs):
    t = np.arange(44100 * 3) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t)] * 2, 1).astype(np.float32) * 0.3
    result = voice_predictor.predict(audio=(44100, stereo), text="lamp on " + "x" * 2000)
    notes = " ".join(result.inputs.notes)
    assert "audio: mixed 2 channels" in notes and "resampled 44100" in notes and "kept the loudest" in notes
    assert "text: text longer than" in notes


def test_to_json_is_serialisable_and_complete(voice_predictor, inputs):
    result = voice_predictor.predict(audio=inputs["audio"], image=inputs["image"], text=inputs["text"])
    data = json.loads(json.dumps(result.to_json()))
    assert data["action"] == result.action
    assert [t["label"] for t in data["top"]] == [a for a, _ in result.top]
    assert set(data["modality_weights"]) == set(MODALITIES)
    assert math.isclose(sum(data["modality_weights"].values()), 1.0, abs_tol=1e-3)
    assert data["tokens"] == ["turn", "on", "the", "lamp"]
    assert data["summary"] == result.summary() and "heard:" in data["summary"] and "sees:" in data["summary"]
    assert isinstance(data["warnings"], list) and isinstance(data["notes"], list)


def test_to_json_with_a_single_input_has_nulls_not_errors(voice_predictor, inputs):
    data = json.loads(json.dumps(voice_predictor.predict(text=inputs["text"]).to_json()))
    assert data["heard"] is None and data["sees"] is None and data["reads"] is not None
    assert data["modality_weights"]["audio"] == 0.0 and data["modality_weights"]["image"] == 0.0
    assert data["confidence_without"] == {}


def test_from_checkpoint_refuses_another_scenario(voice_checkpoint_path, tmp_path):
    import torch

    payload = torch.load(voice_checkpoint_path, weights_only=True)
    payload["scenario"] = "portrait"
    other = tmp_path / "portrait.pt"
    torch.save(payload, other)
    with pytest.raises(ValueError, match="not 'voice_control'") as e:
        VoiceControlPredictor.from_checkpoint(other)
    assert str(other) in str(e.value)
