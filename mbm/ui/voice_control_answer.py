"""The voice-control answer in words: the headline ("not sure" and what is missing, "not supported"
and why, or the action) and the status lines under it."""

from __future__ import annotations

import json
from functools import cache

from mbm.paths import EVAL_RESULTS
from mbm.scenarios.voice_control.predictor import VoiceControlResult
from mbm.scenarios.voice_control.spec import NOT_SUPPORTED, display_name, why_not_supported
from mbm.ui.common import plain

DEFAULT_NOT_SURE_BELOW = 0.8  # without a results file: the held-out choice for the shipped checkpoint


@cache  # read once, like the checkpoint it was measured on (not once per request)
def not_sure_below() -> float:
    """The confidence under which the headline says "not sure": chosen on held-out data by
    ``mbm.evaluate`` (``not_sure_below`` in the results file; answers above it were right >= 90 %)."""
    try:
        return float(json.loads(EVAL_RESULTS.read_text(encoding="utf-8"))["not_sure_below"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_NOT_SURE_BELOW


def disagrees(result: VoiceControlResult) -> bool:
    """Whether an input read alone (at least half sure) names another device or word than the answer."""
    answer = {"device": result.device[0], "word": result.word[0]}
    alone = [("word", result.heard), ("device", result.sees), *(result.reads or {}).items()]
    return any(said is not None and said[1] >= 0.5 and said[0] != answer[part] for part, said in alone)


def headline(result: VoiceControlResult, threshold: float) -> str:
    """The answer in words: the action, or "not supported" and why, or "not sure" and what is missing."""
    present = result.inputs.present
    device, word = result.device[0], result.word[0]
    if result.action == NOT_SUPPORTED and result.confidence >= threshold:
        return f"**Not supported**: {why_not_supported(device, word)}."  # the app's own words
    if result.confidence >= threshold:
        return f"**{plain(display_name(result.action))}** ({result.confidence:.0%} sure)"
    if result.device_recognised is False and "text" not in present:  # the photo was left out
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
        missing = "the command was not clear; say it again"
    elif disagrees(result):
        missing = "the inputs do not agree"
    else:  # e.g. heard 'off' at 85 % and a door at 85 %: 71 % together
        missing = "the inputs agree, but each leaves some doubt; a clearer recording or photo would help"
    return (f"**Not sure**: {missing}. <small>Best guess: {plain(display_name(result.action))} "
            f"({result.confidence:.0%}).</small>")


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
