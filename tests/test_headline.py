"""The voice-control headline: a calibrated "not sure" that says what is missing, and "not supported" with why."""

from __future__ import annotations

import pytest

from mbm.paths import PORTRAIT_ASSETS, VOICE_CONTROL_ASSETS
from mbm.scenarios.voice_control.spec import display_name, why_not_supported
from mbm.ui.voice_control_answer import headline, not_sure_below


@pytest.fixture(scope="module")
def predictor():
    from mbm.scenarios.voice_control.predictor import VoiceControlPredictor

    return VoiceControlPredictor.from_checkpoint()


def test_plain_names_and_why_a_pair_is_not_supported():
    assert display_name("music_player → volume up") == "music player → volume up"
    why = why_not_supported("door", "up")
    assert why.startswith("a door has no 'up'") and "on, off" in why and "numbers" not in why
    assert "and numbers" in why_not_supported("lamp", "left")


@pytest.mark.parametrize("inputs, expected", [
    ({"image": VOICE_CONTROL_ASSETS / "tv.jpg"}, "say a command"),  # a device but no command
    ({"text": "TURN OFF THE LAMPP"}, "typed command was not understood"),  # nothing but typos
    ({"audio": VOICE_CONTROL_ASSETS / "up.wav", "image": PORTRAIT_ASSETS / "examples" / "s1_clear.png"},
     "no device recognised in the photo"),  # a command and a face as the 'device'
])
def test_inputs_that_say_too_little_end_in_not_sure(predictor, inputs, expected):
    result = predictor.predict(**{k: str(v) if k != "text" else v for k, v in inputs.items()})
    line = headline(result, not_sure_below())
    assert line.startswith("**Not sure**") and expected in line, line


def test_a_face_alone_is_refused_as_no_device(predictor):
    from mbm.errors import InputError

    with pytest.raises(InputError, match="no device recognised in the photo"):
        predictor.predict(image=str(PORTRAIT_ASSETS / "examples" / "s1_clear.png"))


def test_a_clear_command_and_photo_is_a_confident_answer(predictor):
    result = predictor.predict(audio=str(VOICE_CONTROL_ASSETS / "up.wav"), image=str(VOICE_CONTROL_ASSETS / "lamp.jpg"))
    assert headline(result, not_sure_below()) == f"**lamp → brighter** ({result.confidence:.0%} sure)"


def test_a_pair_outside_the_table_says_why(predictor):
    result = predictor.predict(audio=str(VOICE_CONTROL_ASSETS / "up.wav"), image=str(VOICE_CONTROL_ASSETS / "door.jpg"))
    assert result.action == "not supported" and result.confidence >= 0.5, (result.action, result.confidence)
    assert headline(result, threshold=0.5).startswith("**Not supported**: a door has no 'up'")


def test_agreeing_inputs_that_are_each_unsure_are_not_called_a_disagreement(predictor):
    """A noisy 'off' (85 %) and a door photo (85 %) agree on 'door → close' but are 71 % sure together."""
    import dataclasses

    from mbm.ui.voice_control_answer import disagrees

    result = predictor.predict(audio=str(VOICE_CONTROL_ASSETS / "off_noisy.wav"),
                               image=str(VOICE_CONTROL_ASSETS / "door.jpg"))
    assert result.action == "door → close" and not disagrees(result)
    line = headline(result, threshold=max(result.confidence + 0.01, 0.5))
    assert line.startswith("**Not sure**: the inputs agree, but each leaves some doubt"), line
    other = dataclasses.replace(result, heard=("up", 0.9))  # the speech alone says another word
    assert disagrees(other) and "the inputs do not agree" in headline(other, threshold=result.confidence + 0.01)
    assert not disagrees(dataclasses.replace(result, heard=("up", 0.3)))  # an unsure reading is no disagreement


def test_a_typed_command_naming_another_device_is_flagged_whatever_the_weights(predictor):
    """The README's step: the lamp example ('up' + lamp), then typing "turn off the fan". The text gets almost
    no weight and the fused answer stays 'lamp → brighter', but the headline must say the inputs disagree
    and name them, at any confidence line."""
    from mbm.ui.voice_control_answer import answer, conflicts, headline_html

    result = predictor.predict(audio=str(VOICE_CONTROL_ASSETS / "up.wav"), image=str(VOICE_CONTROL_ASSETS / "lamp.jpg"),
                               text="turn off the fan")
    assert result.reads["device"][0] == "fan" and result.reads["device"][1] >= 0.5, result.reads
    assert result.device[0] != "fan", result.device  # the weights follow the speech and the photo
    assert conflicts(result) == ["typed command"]
    for threshold in (0.0, not_sure_below()):  # whatever the line and the weights
        line = headline(result, threshold)
        assert line.startswith("**Not sure**: the inputs do not agree: the typed command says fan"), line
        assert "but the speech says 'up' and the photo shows lamp" in line, line
        assert f"Best guess: {display_name(result.action)} ({result.confidence:.0%})" in line, line
        assert answer(result, threshold)[0] == "unsure"
    box = headline_html(result, not_sure_below())
    assert 'data-state="unsure"' in box and "Not sure · best guess" in box and "typed command says fan" in box, box


def test_the_conflict_rule_is_at_least_half_sure_and_names_each_input(predictor):
    import dataclasses

    from mbm.ui.voice_control_answer import conflict_words, conflicts

    result = predictor.predict(audio=str(VOICE_CONTROL_ASSETS / "up.wav"), image=str(VOICE_CONTROL_ASSETS / "lamp.jpg"))
    assert conflicts(result) == [] and conflict_words(result) is None
    word = result.word[0]
    for sure, flagged in ((0.5, True), (0.49, False)):
        photo = dataclasses.replace(result, sees=("fan" if result.device[0] != "fan" else "tv", sure))
        assert bool(conflicts(photo)) is flagged, (sure, photo.sees)
    both = dataclasses.replace(result, sees=("tv", 0.9), heard=("five" if word != "five" else "six", 0.8))
    assert conflicts(both) == ["speech", "photo"]
    assert conflict_words(both).startswith("the inputs do not agree: the speech says '") and "photo shows tv" in \
        conflict_words(both)
    # a confident answer (99 %) is still "not sure" when an input disagrees
    sure = dataclasses.replace(both, confidence=0.99)
    assert headline(sure, threshold=0.5).startswith("**Not sure**: the inputs do not agree")


def test_each_shipped_example_answers_as_its_caption_promises(predictor):
    """examples.json's expectations (not hard-coded numbers): the expected action, "not sure" where marked,
    and no disagreement flagged on any of them."""
    import json

    from mbm.ui.voice_control_answer import answer, conflicts, headline_html

    for example in json.loads((VOICE_CONTROL_ASSETS / "examples.json").read_text(encoding="utf-8")):
        files = {k: str(VOICE_CONTROL_ASSETS / example[k]) for k in ("audio", "image") if example.get(k)}
        result = predictor.predict(**files, text=example.get("text"))
        state, _, _ = answer(result, not_sure_below())
        assert result.action == example["expect"], (example["caption"], result.action)
        assert conflicts(result) == [], (example["caption"], result.heard, result.sees, result.reads)
        assert state == ("unsure" if example.get("not_sure") else "sure"), (example["caption"], result.confidence)
        assert display_name(example["expect"]) in headline_html(result, not_sure_below())


def test_an_unclear_word_names_the_two_words_it_hesitated_between(predictor):
    result = predictor.predict(audio=str(VOICE_CONTROL_ASSETS / "off_noisy.wav"), text="the lamp")
    (first, p1), (second, p2) = result.heard, result.heard_runner_up
    assert first != second and p1 >= p2 > 0
    line = headline(result, threshold=max(p1, result.confidence) + 0.01)
    assert f"the spoken word was not clear: '{first}' ({p1:.0%}) or '{second}' ({p2:.0%}); say it again" in line
    assert result.to_json()["heard_runner_up"] == {"label": second, "confidence": round(p2, 4)}
