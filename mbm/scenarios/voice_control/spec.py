"""Voice control: what the scenario means, independent of any model.

A command is a (device, word) pair: the device comes from the photo (or is named
in text), the word from speech (or text). The action table turns the pair into
an action, so "up" is *brighter* for a lamp and *volume up* for a music player.
Typed commands are generated from templates with synonyms; some synonyms and
templates are held out so validation measures paraphrases never trained on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mbm.data.labels import DEVICES, DIGITS, WORDS  # the shared data's labels: the devices, the command words

NOT_SUPPORTED = "not supported"


def _digit_actions(fmt: str, digits=range(10)) -> dict[str, str]:
    """Spoken digits n -> ``fmt`` with {n} (the digit) and {pct} (n x 10)."""
    return {DIGITS[n]: fmt.format(n=n, pct=10 * n) for n in digits}


# device -> word -> action; a word missing from a device's row is "not supported".
ACTION_TABLE: dict[str, dict[str, str]] = {
    "lamp": {"yes": "confirm", "no": "cancel", "on": "turn on", "off": "turn off", "go": "turn on",
             "up": "brighter", "down": "dimmer", **_digit_actions("brightness {pct}%")},
    "music_player": {"yes": "confirm", "no": "cancel", "on": "turn on", "off": "turn off",
                     "up": "volume up", "down": "volume down", "left": "previous track",
                     "right": "next track", "stop": "stop", "go": "play",
                     **_digit_actions("track {n}", range(1, 10))},
    "tv": {"yes": "confirm", "no": "cancel", "on": "turn on", "off": "turn off",
           "up": "volume up", "down": "volume down", "left": "previous channel",
           "right": "next channel", "stop": "pause", "go": "play", **_digit_actions("channel {n}")},
    "fan": {"yes": "confirm", "no": "cancel", "on": "turn on", "off": "turn off", "go": "turn on",
            "stop": "turn off", "up": "faster", "down": "slower", "left": "turn left",
            "right": "turn right", "zero": "turn off", **_digit_actions("speed {n}", range(1, 6))},
    "heater": {"yes": "confirm", "no": "cancel", "on": "turn on", "off": "turn off", "go": "turn on",
               "stop": "turn off", "up": "warmer", "down": "cooler", "zero": "turn off",
               **_digit_actions("level {n}", range(1, 6))},
    "blinds": {"yes": "confirm", "no": "cancel", "on": "open", "off": "close", "up": "raise",
               "down": "lower", "stop": "stop moving", **_digit_actions("open {pct}%")},
    "door": {"yes": "confirm", "no": "cancel", "on": "open", "off": "close", "go": "open",
             "stop": "hold"},
}


def action_name(device: str, word: str) -> str:
    """The action label for a device and a spoken word, e.g. ``"lamp → brighter"``."""
    action = ACTION_TABLE[device].get(word)
    return NOT_SUPPORTED if action is None else f"{device} → {action}"


ACTIONS: tuple[str, ...] = tuple(sorted({action_name(d, w) for d in DEVICES for w in WORDS}))


def display_name(label: str) -> str:
    """A label as a person reads it: ``"music_player → volume up"`` -> ``"music player → volume up"``."""
    return label.replace("_", " ")


def why_not_supported(device: str, word: str) -> str:
    """Why a (device, word) pair has no action, and what the device does understand."""
    understood = [w for w in WORDS if w in ACTION_TABLE[device] and w not in DIGITS]
    return (f"a {display_name(device)} has no '{word}' (it understands {', '.join(understood)}"
            f"{' and numbers' if any(d in ACTION_TABLE[device] for d in DIGITS) else ''})")
SUPPORTED_PAIRS = tuple((d, w) for d in DEVICES for w in WORDS if w in ACTION_TABLE[d])


def action_index_matrix() -> list[list[int]]:
    """``[device][word] -> index into ACTIONS``; the model sums p(device) p(word) per action."""
    return [[ACTIONS.index(action_name(d, w)) for w in WORDS] for d in DEVICES]


# --- Typed commands ---------------------------------------------------------------------------
# Device names: the first few are for training, the last one of each is held out for validation.
DEVICE_SYNONYMS = {
    "blinds": (["blinds", "the blinds", "window blinds", "curtains", "the shades"], ["the roller blind"]),
    "door": (["door", "the door", "front door", "the doors"], ["the entrance"]),
    "fan": (["fan", "the fan", "ceiling fan", "the ventilator"], ["the air fan"]),
    "heater": (["heater", "the heater", "space heater", "the heating"], ["the radiator"]),
    "lamp": (["lamp", "the lamp", "light", "the lights", "the bulb"], ["the reading lamp"]),
    "music_player": (["music", "the music", "music player", "the stereo", "the speaker", "the cd player"],
                     ["the hifi"]),
    "tv": (["tv", "the tv", "television", "the screen"], ["the telly"]),
}

# Command phrases per word: generic ones, then device-specific ones (device -> phrases).
# The last phrase of each generic list is held out for validation.
WORD_PHRASES: dict[str, list[str]] = {
    "yes": ["yes", "confirm", "ok", "sure", "yes please"],
    "no": ["no", "cancel", "never mind", "nope"],
    "up": ["up", "turn up", "turn it up", "increase", "more", "higher"],
    "down": ["down", "turn down", "turn it down", "decrease", "less", "lower it"],
    "left": ["left", "go left", "back", "previous"],
    "right": ["right", "go right", "skip", "next"],
    "on": ["on", "turn on", "switch on", "power on", "start up"],
    "off": ["off", "turn off", "switch off", "power off", "shut down"],
    "stop": ["stop", "halt", "pause", "freeze"],
    "go": ["go", "start", "resume", "begin"],
}
DEVICE_WORD_PHRASES: dict[tuple[str, str], list[str]] = {
    ("lamp", "up"): ["brighter", "brighten", "more light"], ("lamp", "down"): ["dim", "darker", "dimmer"],
    ("music_player", "up"): ["louder", "volume up"], ("music_player", "down"): ["quieter", "volume down", "softer"],
    ("music_player", "go"): ["play"], ("music_player", "right"): ["next song", "next track"],
    ("music_player", "left"): ["previous song", "previous track"],
    ("tv", "up"): ["louder", "volume up"], ("tv", "down"): ["quieter", "volume down"],
    ("tv", "right"): ["next channel", "channel up"], ("tv", "left"): ["previous channel", "channel down"],
    ("tv", "go"): ["play"],
    ("fan", "up"): ["faster", "speed up"], ("fan", "down"): ["slower", "slow down"],
    ("heater", "up"): ["warmer", "hotter", "heat up"], ("heater", "down"): ["cooler", "colder"],
    ("blinds", "up"): ["raise", "pull up", "roll up"], ("blinds", "down"): ["lower", "pull down", "roll down"],
    ("blinds", "on"): ["open"], ("blinds", "off"): ["close", "shut"],
    ("door", "on"): ["open", "unlock"], ("door", "off"): ["close", "shut", "lock"], ("door", "stop"): ["hold"],
}
DIGIT_PREFIXES = {"tv": ["channel"], "music_player": ["track", "song"], "fan": ["speed"],
                  "heater": ["level"], "lamp": ["brightness"], "blinds": ["open to"]}
GENERIC_DIGIT_PREFIXES = (["number", "set to", ""], ["put it on"])
# Templates: {cmd} a command phrase, {dev} a device name. Last one held out.
TEMPLATES = (["{cmd} {dev}", "{dev} {cmd}", "please {cmd} {dev}", "{cmd} {dev} please",
              "can you {cmd} {dev}", "{dev} {cmd} please", "hey {cmd} {dev}"],
             ["could you {cmd} {dev} for me"])
COMMAND_ONLY_TEMPLATES = (["{cmd}", "{cmd} please", "please {cmd}"], ["{cmd} now"])
DEVICE_ONLY_TEMPLATES = (["{dev}", "the {dev_bare}", "{dev} please", "use {dev}"], ["it is {dev}"])


def _split(items: list[str], held_out: bool) -> list[str]:
    """Train gets all but the last item, validation only the last."""
    return items[-1:] if held_out else items[:-1] if len(items) > 1 else items


def _command_phrases(device: str | None, word: str, held_out: bool) -> list[str]:
    if word in DIGITS:
        n = str(DIGITS.index(word))
        prefixes = list(GENERIC_DIGIT_PREFIXES[1] if held_out else GENERIC_DIGIT_PREFIXES[0])
        if device in DIGIT_PREFIXES and not held_out:
            prefixes += DIGIT_PREFIXES[device]
        return [f"{p} {num}".strip() for p in prefixes for num in (n, word)]
    phrases = _split(WORD_PHRASES[word], held_out)
    if device is not None and not held_out:
        phrases = phrases + DEVICE_WORD_PHRASES.get((device, word), [])
    return phrases


@dataclass(frozen=True)
class TypedCommand:
    """A generated typed command and what it names (None = not named)."""

    text: str
    device: str | None
    word: str | None


def make_typed_command(rng: random.Random, device: str, word: str, names_device: bool,
                       names_word: bool, held_out: bool = False) -> TypedCommand:
    """Phrase a (device, word) command as text naming the device, the word, or both."""
    assert names_device or names_word, "a typed command must name something"
    dev_names = DEVICE_SYNONYMS[device][1 if held_out else 0]
    dev = rng.choice(dev_names)
    if names_word:
        cmd = rng.choice(_command_phrases(device if names_device else None, word, held_out))
        if names_device:
            template = rng.choice(TEMPLATES[1] if held_out else TEMPLATES[0])
        else:
            template = rng.choice(COMMAND_ONLY_TEMPLATES[1] if held_out else COMMAND_ONLY_TEMPLATES[0])
    else:
        cmd = ""
        template = rng.choice(DEVICE_ONLY_TEMPLATES[1] if held_out else DEVICE_ONLY_TEMPLATES[0])
    dev_bare = dev.removeprefix("the ")
    text = template.format(cmd=cmd, dev=dev, dev_bare=dev_bare)
    return TypedCommand(" ".join(text.split()), device if names_device else None, word if names_word else None)


def training_vocabulary() -> list[str]:
    """Every word that the training (not held-out) templates can produce."""
    words: set[str] = set()
    pieces = [t for t in TEMPLATES[0] + COMMAND_ONLY_TEMPLATES[0] + DEVICE_ONLY_TEMPLATES[0]]
    pieces += [n for names, _ in DEVICE_SYNONYMS.values() for n in names]
    pieces += [p for w in WORDS if w not in DIGITS for p in _split(WORD_PHRASES[w], False)]
    pieces += [p for ps in DEVICE_WORD_PHRASES.values() for p in ps]
    pieces += GENERIC_DIGIT_PREFIXES[0] + [p for ps in DIGIT_PREFIXES.values() for p in ps]
    pieces += list(DIGITS) + [str(n) for n in range(10)]
    for piece in pieces:
        for token in piece.replace("{cmd}", " ").replace("{dev}", " ").replace("{dev_bare}", " ").split():
            words.add(token)
    return sorted(words)


def action_probs(device_probs, word_probs, index):
    """p(action) = sum over (device, word) mapping to it of p(device) p(word).

    Args:
        device_probs: (B, n_devices) tensor; word_probs: (B, n_words) tensor.
        index: (n_devices, n_words) long tensor of action ids (see ``action_index_matrix``).
    Returns:
        (B, n_actions) tensor; rows sum to 1.
    """
    import torch

    joint = (device_probs[:, :, None] * word_probs[:, None, :]).flatten(1)  # (B, D*W)
    n_actions = int(index.max()) + 1
    out = torch.zeros(joint.shape[0], n_actions, dtype=joint.dtype, device=joint.device)
    return out.index_add_(1, index.flatten().to(joint.device), joint)  # (B, A)
