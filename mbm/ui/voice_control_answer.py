"""The voice-control answer in words: the headline ("not sure" and what is missing, "not supported"
and why, or the action) and the status lines under it."""

from __future__ import annotations

import json
from functools import cache

from mbm.paths import EVAL_RESULTS
from mbm.scenarios.voice_control.predictor import VoiceControlResult
from mbm.scenarios.voice_control.spec import NOT_SUPPORTED, display_name, why_not_supported
from mbm.ui.common import answer_html, plain

DEFAULT_NOT_SURE_BELOW = 0.8  # without a results file: the held-out choice for the shipped checkpoint


@cache  # read once, like the checkpoint it was measured on (not once per request)
def not_sure_below() -> float:
    """The confidence under which the headline says "not sure": chosen on held-out data by
    ``mbm.evaluate`` (``not_sure_below`` in the results file; answers above it were right >= 90 %)."""
    try:
        return float(json.loads(EVAL_RESULTS.read_text(encoding="utf-8"))["not_sure_below"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_NOT_SURE_BELOW


SURE_READING = 0.5  # an input read alone "names" a device or word when at least this sure of it


def _readings(result: VoiceControlResult) -> list[tuple[str, str, tuple[str, float]]]:
    """What each input read alone says: ``(input, "device" or "word", (label, p))``."""
    alone = [("speech", "word", result.heard), ("photo", "device", result.sees)]
    alone += [("typed command", part, said) for part, said in (result.reads or {}).items()]
    return [(name, part, said) for name, part, said in alone if said is not None]


def conflicts(result: VoiceControlResult) -> list[str]:
    """The inputs that, read alone and at least half sure, name another device or word than the answer."""
    answer = {"device": result.device[0], "word": result.word[0]}
    return list(dict.fromkeys(name for name, part, said in _readings(result)
                              if said[1] >= SURE_READING and said[0] != answer[part]))


def disagrees(result: VoiceControlResult) -> bool:
    """Whether an input read alone (at least half sure) names another device or word than the answer."""
    return bool(conflicts(result))


def _says(result: VoiceControlResult, name: str) -> str:
    """What one input read alone says, in words: "the typed command says fan, 'off'"."""
    parts = [display_name(said[0]) if part == "device" else f"'{said[0]}'"
             for who, part, said in _readings(result) if who == name and said[1] >= SURE_READING]
    verb = "shows" if name == "photo" else "says"
    return f"the {name} {verb} {', '.join(parts)}" if parts else f"the {name} is unclear"


def conflict_words(result: VoiceControlResult) -> str | None:
    """"the inputs do not agree: the typed command says fan, 'off', but the speech says 'up' and the
    photo shows lamp", or None when no input disagrees (the rule holds whatever the weights)."""
    against = conflicts(result)
    if not against:
        return None
    agree = [name for name in ("speech", "photo", "typed command")
             if name not in against and any(who == name for who, _, _ in _readings(result))]
    words = "the inputs do not agree: " + " and ".join(_says(result, n) for n in against)
    if agree:
        words += ", but " + " and ".join(_says(result, n) for n in agree)
    return words


def answer(result: VoiceControlResult, threshold: float) -> tuple[str, str, str | None]:
    """The answer's kind and words: ``("sure", action, None)``, ``("none", "Not supported", why)`` or
    ``("unsure", "Not sure", what is missing)``. A disagreeing input makes any answer "not sure"."""
    present = result.inputs.present
    device, word = result.device[0], result.word[0]
    conflict = conflict_words(result)
    if conflict is None and result.confidence >= threshold:
        if result.action == NOT_SUPPORTED:
            return "none", "Not supported", why_not_supported(device, word)
        return "sure", display_name(result.action), None
    if conflict is not None:
        missing = conflict
    elif result.device_recognised is False and "text" not in present:  # the photo was left out
        missing = "no device recognised in the photo; show the device (or name it)"
    elif "image" in present and result.sees is not None and result.sees[1] < threshold and "text" not in present:
        missing = "that does not look like one of the devices; show the device (or name it)"
    elif "audio" not in present and "text" not in present:
        missing = "say a command (or type one)"
    elif "image" not in present and "text" not in present:
        missing = "show the device (or name it)"
    elif present == ["text"] and result.reads and result.reads["device"][1] >= threshold:
        missing = (f"the text names the {display_name(result.reads['device'][0])} but its command is unclear; "
                   "say it, or type e.g. 'turn off the lamp'")
    elif present == ["text"]:
        missing = "the typed command was not understood; try e.g. 'turn off the lamp'"
    elif "audio" in present and result.heard is not None and result.heard[1] < threshold:
        missing = f"the spoken word was not clear: {hesitation(result)}; say it again"
    else:  # e.g. heard 'off' at 85 % and a door at 85 %: 71 % together
        missing = "the inputs agree, but each leaves some doubt; a clearer recording or photo would help"
    return "unsure", "Not sure", missing


def hesitation(result: VoiceControlResult) -> str:
    """The two words the audio alone hesitated between, e.g. "'off' (48 %) or 'up' (41 %)"."""
    pairs = [p for p in (result.heard, result.heard_runner_up) if p is not None]
    return " or ".join(f"'{plain(w)}' ({p:.0%})" for w, p in pairs)


def headline(result: VoiceControlResult, threshold: float) -> str:
    """The answer in words (Markdown): the action, or "not supported" and why, or "not sure" and what is
    missing (a disagreeing input among them, named)."""
    state, lead, detail = answer(result, threshold)
    if state == "sure":
        return f"**{plain(lead)}** ({result.confidence:.0%} sure)"
    if state == "none":
        return f"**{lead}**: {detail}."  # the app's own words
    return (f"**Not sure**: {detail}. <small>Best guess: {plain(display_name(result.action))} "
            f"({result.confidence:.0%}).</small>")


def headline_html(result: VoiceControlResult, threshold: float) -> str:
    """The answer box at the top of the result (mbm.ui.common.answer_html): bold and green when sure,
    amber "Not sure — best guess" otherwise, grey when not supported; the not-sure line is named."""
    state, lead, detail = answer(result, threshold)
    line = f"sure means at least {threshold:.0%}, a line chosen on held-out data"
    if state == "sure":
        return answer_html(state, lead, f"{result.confidence:.0%} sure ({line})")
    if state == "none":
        return answer_html(state, f"Not supported: {lead_guess(result)}", detail[:1].upper() + detail[1:] + ".")
    return answer_html(state, f"Not sure · best guess {lead_guess(result)} ({result.confidence:.0%})",
                       f"{detail[:1].upper() + detail[1:]}. ({line})")


def lead_guess(result: VoiceControlResult) -> str:
    """The best guess in words: the action, or the device and word when the pair is not supported."""
    if result.action == NOT_SUPPORTED:
        return f"{display_name(result.device[0])} + '{result.word[0]}'"
    return display_name(result.action)


def voice_control_status(result: VoiceControlResult) -> str:
    """The status: the headline, what each input contributed, weights, warnings and notes."""
    present = result.inputs.present
    lines = [headline(result, not_sure_below())]
    if result.summary():
        lines.append(plain(display_name(result.summary())))
    lines.append("attention: " + " · ".join(
        f"{m} {w:.2f}" if m in present else f"{m} 0 (absent)" for m, w in result.modality_weights.items()))
    if result.confidence_without:
        lines.append("confidence without each input: " + " · ".join(
            f"no {m} {p:.2f}" for m, p in result.confidence_without.items()))
    lines += [f"⚠️ {plain(w)}" for w in result.warnings]
    lines += [f"<small>{plain(n)}</small>" for n in result.inputs.notes]
    return "  \n".join(lines)  # two spaces + newline: a Markdown line break
