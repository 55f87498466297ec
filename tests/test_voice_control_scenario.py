"""The voice-control scenario without a model: action table, action probabilities, typed commands."""

from __future__ import annotations

import random

import pytest
import torch

from mbm.preprocess import tokenize
from mbm.scenarios.voice_control.spec import (
    ACTION_TABLE,
    ACTIONS,
    DEVICE_SYNONYMS,
    DEVICES,
    DIGITS,
    NOT_SUPPORTED,
    SUPPORTED_PAIRS,
    WORDS,
    action_index_matrix,
    action_name,
    action_probs,
    make_typed_command,
    training_vocabulary,
)

MODES = [(True, True), (True, False), (False, True)]  # (names_device, names_word)


# --- the action table ----------------------------------------------------------------------------

def test_devices_and_words_are_the_specified_ones():
    assert DEVICES == ("blinds", "door", "fan", "heater", "lamp", "music_player", "tv")
    assert set(WORDS) == {"yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", *DIGITS}
    assert len(WORDS) == 20 and len(set(WORDS)) == 20
    assert set(ACTION_TABLE) == set(DEVICES)
    assert all(set(row) <= set(WORDS) for row in ACTION_TABLE.values()), "the table uses unknown words"


def test_every_pair_maps_to_an_action_or_not_supported():
    for device in DEVICES:
        for word in WORDS:
            action = action_name(device, word)
            assert action in ACTIONS
            if word in ACTION_TABLE[device]:
                assert action == f"{device} → {ACTION_TABLE[device][word]}"
                assert (device, word) in SUPPORTED_PAIRS
            else:
                assert action == NOT_SUPPORTED
                assert (device, word) not in SUPPORTED_PAIRS
    assert NOT_SUPPORTED in ACTIONS
    assert set(ACTIONS) == {action_name(d, w) for d in DEVICES for w in WORDS}, "no orphan actions"
    assert list(ACTIONS) == sorted(set(ACTIONS))


@pytest.mark.parametrize("device,word,action", [
    ("lamp", "up", "lamp → brighter"),
    ("music_player", "up", "music_player → volume up"),
    ("blinds", "up", "blinds → raise"),
    ("tv", "five", "tv → channel 5"),
    ("heater", "down", "heater → cooler"),
    ("blinds", "stop", "blinds → stop moving"),
    ("lamp", "on", "lamp → turn on"),
    ("door", "five", NOT_SUPPORTED),
])
def test_examples_from_the_spec(device, word, action):
    assert action_name(device, word) == action


def test_the_same_word_means_different_actions_on_different_devices():
    ups = {action_name(d, "up") for d in ("lamp", "music_player", "blinds")}
    assert len(ups) == 3


def test_every_device_supports_the_basic_commands_and_the_door_not_digits():
    for device in DEVICES:
        for word in ("yes", "no", "on", "off"):
            assert action_name(device, word) != NOT_SUPPORTED, (device, word)
    assert all(action_name("door", d) == NOT_SUPPORTED for d in DIGITS)
    assert 0 < len(SUPPORTED_PAIRS) < len(DEVICES) * len(WORDS)


def test_action_index_matrix_points_at_the_right_actions():
    index = action_index_matrix()
    assert len(index) == len(DEVICES) and all(len(row) == len(WORDS) for row in index)
    for i, device in enumerate(DEVICES):
        for j, word in enumerate(WORDS):
            assert ACTIONS[index[i][j]] == action_name(device, word)


# --- action probabilities ------------------------------------------------------------------------

def test_action_probs_rows_sum_to_one():
    torch.manual_seed(0)
    p_device = torch.randn(6, len(DEVICES)).softmax(-1)
    p_word = torch.randn(6, len(WORDS)).softmax(-1)
    out = action_probs(p_device, p_word, torch.tensor(action_index_matrix()))
    assert out.shape == (6, len(ACTIONS))
    assert torch.all(out >= 0)
    assert torch.allclose(out.sum(1), torch.ones(6), atol=1e-6)


def test_action_probs_of_certain_inputs_is_the_table_entry():
    index = torch.tensor(action_index_matrix())
    for device, word in [("lamp", "up"), ("tv", "five"), ("door", "five")]:
        p_device = torch.zeros(1, len(DEVICES))
        p_device[0, DEVICES.index(device)] = 1
        p_word = torch.zeros(1, len(WORDS))
        p_word[0, WORDS.index(word)] = 1
        out = action_probs(p_device, p_word, index)[0]
        assert out[ACTIONS.index(action_name(device, word))].item() == pytest.approx(1.0)
        assert out.sum().item() == pytest.approx(1.0)


def test_action_probs_add_up_pairs_with_the_same_action():
    """'not supported' collects the mass of every unsupported pair."""
    index = torch.tensor(action_index_matrix())
    p_device = torch.full((1, len(DEVICES)), 1 / len(DEVICES))
    p_word = torch.full((1, len(WORDS)), 1 / len(WORDS))
    out = action_probs(p_device, p_word, index)[0]
    unsupported = len(DEVICES) * len(WORDS) - len(SUPPORTED_PAIRS)
    expected = unsupported / (len(DEVICES) * len(WORDS))
    assert out[ACTIONS.index(NOT_SUPPORTED)].item() == pytest.approx(expected)


# --- typed commands ------------------------------------------------------------------------------

def _device_names(held_out: bool) -> set[str]:
    return {n for train, held in DEVICE_SYNONYMS.values() for n in (held if held_out else train)}


def _contains_phrase(text: str, phrase: str) -> bool:
    return f" {phrase} " in f" {text} "


def _commands(held_out: bool, repeats: int = 6, seed: int = 0):
    rng = random.Random(seed)
    for device in DEVICES:
        for word in WORDS:
            for names_device, names_word in MODES:
                for _ in range(repeats):
                    yield make_typed_command(rng, device, word, names_device, names_word, held_out)


@pytest.mark.parametrize("held_out", [False, True], ids=["train", "held_out"])
def test_typed_commands_name_what_they_say(held_out):
    all_names = _device_names(False) | _device_names(True)
    for device in DEVICES:
        own = set(DEVICE_SYNONYMS[device][1 if held_out else 0])
        for word in WORDS:
            for names_device, names_word in MODES:
                rng = random.Random(f"{device}/{word}/{names_device}/{names_word}")
                for _ in range(4):
                    cmd = make_typed_command(rng, device, word, names_device, names_word, held_out)
                    assert cmd.text and cmd.text == " ".join(cmd.text.split()), repr(cmd.text)
                    assert cmd.device == (device if names_device else None)
                    assert cmd.word == (word if names_word else None)
                    named = {n for n in all_names if _contains_phrase(cmd.text, n)}
                    if names_device:
                        # "the {dev_bare}" may drop the leading "the" of a synonym
                        bare = {n.removeprefix("the ") for n in own}
                        assert any(_contains_phrase(cmd.text, n) for n in own | bare), cmd
                    else:
                        assert not named, f"{cmd} names a device it should not: {named}"
                    if names_word and word in DIGITS:
                        n = str(DIGITS.index(word))
                        assert _contains_phrase(cmd.text, n) or _contains_phrase(cmd.text, word), cmd


def test_device_only_commands_carry_no_command_words():
    filler = {"the", "please", "use", "it", "is"}
    device_tokens = {t for names in DEVICE_SYNONYMS.values() for n in names[0] + names[1] for t in tokenize(n)}
    for cmd in _commands(held_out=False):
        if cmd.word is None:
            assert set(tokenize(cmd.text)) <= device_tokens | filler, cmd


def test_a_typed_command_must_name_something():
    with pytest.raises(AssertionError):
        make_typed_command(random.Random(0), "lamp", "up", False, False)


def test_generation_is_seeded():
    a = [c.text for c in _commands(False, repeats=1, seed=3)]
    b = [c.text for c in _commands(False, repeats=1, seed=3)]
    c = [c.text for c in _commands(False, repeats=1, seed=4)]
    assert a == b and a != c


def test_held_out_phrasings_differ_from_training_ones():
    train = {c.text for c in _commands(held_out=False, repeats=10)}
    held = {c.text for c in _commands(held_out=True, repeats=10)}
    assert len(train) > 500 and len(held) > 50
    assert not train & held, f"held-out phrasings seen in training: {sorted(train & held)[:5]}"
    assert not _device_names(False) & _device_names(True), "a device synonym is on both sides"


def test_training_texts_use_only_the_training_vocabulary():
    vocab = set(training_vocabulary())
    for cmd in _commands(held_out=False):
        missing = [t for t in tokenize(cmd.text) if t not in vocab]
        assert not missing, f"{cmd.text!r}: {missing} not in the vocabulary"


def test_training_vocabulary_is_sorted_tokens():
    vocab = training_vocabulary()
    assert vocab == sorted(set(vocab)) and len(vocab) > 50
    assert all(tokenize(w) == [w] for w in vocab), [w for w in vocab if tokenize(w) != [w]]
    for word in ("lamp", "tv", "up", "five", "5", "channel", "brighter"):
        assert word in vocab
