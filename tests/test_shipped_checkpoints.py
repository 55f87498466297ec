"""The shipped voice-control checkpoint on the committed demo examples (real held-out recordings).

Each example in ``assets/voice_control/examples.json`` states the action the demo promises;
the checkpoint must deliver it, with the weights the app shows (absent input = 0, sum = 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mbm.checkpoint import load_checkpoint
from mbm.scenarios.voice_control.predictor import VoiceControlPredictor

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets" / "voice_control"
EXAMPLES = json.loads((ASSETS / "examples.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def predictor() -> VoiceControlPredictor:
    return VoiceControlPredictor.from_checkpoint()


def test_shipped_checkpoint_is_small_and_self_describing():
    path = ROOT / "checkpoints" / "voice_control.pt"
    assert path.stat().st_size < 20e6
    ckpt = load_checkpoint(path, "voice_control")
    assert len(ckpt.labels["device"]) == 7 and len(ckpt.labels["word"]) == 20
    assert ckpt.vocab[:2] == ["<pad>", "<unk>"] and ckpt.extra["actions"]
    held = ckpt.metrics["heldout"]  # measured on speakers and photos never trained on
    assert held["n_clips"] > 0 and held["n_photos"] > 0


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["caption"] for e in EXAMPLES])
def test_example_gives_the_promised_action(predictor, example):
    audio = str(ASSETS / example["audio"]) if example["audio"] else None
    image = str(ASSETS / example["image"]) if example["image"] else None
    result = predictor.predict(audio=audio, image=image, text=example["text"])
    assert result.action == example["expect"], (result.action, result.top, result.summary())
    # The caption promises what the headline shows: the action, or "not sure" where the example says so.
    from mbm.scenarios.voice_control.spec import display_name
    from mbm.ui.voice_control_answer import headline, not_sure_below

    line = headline(result, not_sure_below())
    if example.get("not_sure"):
        assert line.startswith("**Not sure**") and "not sure" in example["caption"], (line, example["caption"])
    else:
        assert line.startswith(f"**{display_name(example['expect'])}**"), line
        assert example["caption"].endswith(display_name(example["expect"]).split(" → ")[1]) or \
            display_name(example["expect"]).split(" → ")[1] in example["caption"], (example["caption"], line)
    given = {"audio": audio is not None, "image": image is not None, "text": bool(example["text"])}
    assert sum(result.modality_weights.values()) == pytest.approx(1.0, abs=1e-5)
    for modality, present in given.items():
        assert (result.modality_weights[modality] > 0) == present


def test_the_image_decides_what_up_means(predictor):
    """The same recording of 'up' gives three different actions with three device photos."""
    actions = {predictor.predict(audio=str(ASSETS / "up.wav"), image=str(ASSETS / f"{d}.jpg")).action
               for d in ("lamp", "music_player", "blinds")}
    assert actions == {"lamp → brighter", "music_player → volume up", "blinds → raise"}


def test_noisy_recording_alone_is_unsure_but_photo_rescues_it(predictor):
    alone = predictor.predict(audio=str(ASSETS / "off_noisy.wav"))
    fused = predictor.predict(audio=str(ASSETS / "off_noisy.wav"), image=str(ASSETS / "door.jpg"))
    assert fused.action == "door → close"
    assert fused.confidence > alone.confidence
