"""The Evaluation tab: the shipped voice-control checkpoint's held-out numbers, from one results file."""

from __future__ import annotations

import gradio as gr

from mbm import eval_figures
from mbm.figures import figure_svg
from mbm.paths import EVAL_RESULTS, ROOT
from mbm.ui.common import plain

EVAL_COMMAND = ("python -m mbm.evaluate --scenario voice_control --data ../shared/data --split heldout --json "
                "--results assets/voice_control/eval_results.json")


def evaluation():
    """The held-out evaluation of the shipped voice-control checkpoint (``eval_results.json``) as JSON.

    Accuracy per modality subset, our fusion beside late fusion, confusion matrices, robustness
    curves and the faithfulness metrics; ``{"error": ..., "command": ...}`` when the file is missing.
    """
    rel = EVAL_RESULTS.relative_to(ROOT)
    try:
        results = eval_figures.load_eval_results(EVAL_RESULTS)
    except (OSError, ValueError) as e:
        return {"error": f"{rel} cannot be read: {e}", "command": EVAL_COMMAND}
    if results is None:
        return {"error": f"no evaluation results yet: {rel} is missing", "command": EVAL_COMMAND}
    return results


def _fmt(x) -> str:
    return "–" if x is None else f"{float(x):.3f}"


def evaluation_summary(results: dict) -> str:
    """Where the numbers come from, and the headline comparison."""
    if not isinstance(results, dict) or "error" in results:
        error = (results or {}).get("error", "no evaluation results") if isinstance(results, dict) else \
            "no evaluation results"
        return (f"⚠️ {plain(error)}.\n\nWrite it with (from the repository root):\n\n"
                f"```\n{(results or {}).get('command') or EVAL_COMMAND}\n```")
    r = results
    return f"""
Measured with the shipped checkpoint on the **{plain(str(r.get('split', '?')))}** split of our data
({r.get('n_clips', '?')} real recordings and {r.get('n_photos', '?')} photos that training never saw),
{plain(str(r.get('created', '?')))}. How to read it:

- **Our fusion vs late fusion.** Given a spoken command and a photo, the model picked the right action
  **{_pct(r.get('action_accuracy'))}** of the time. Simply averaging what each input says alone
  ("late fusion") gets {_pct(r.get('late_fusion_action_accuracy'))}: fusing the inputs is what makes it work.
- **Photos from elsewhere.** From the photo alone the device was right
  **{_pct(r.get('device_accuracy'))}** of the time on held-out photos of the training sources, and
  **{_pct(r.get('device_accuracy_kept_apart_sources'))}** on photos from sources the image side never
  trained on (kept apart). Faces, colours and noise were answered "no device recognised"
  {_pct(r.get('no_device_rejection'))} of the time, photos of everyday things (a general collection, none of
  it a device) {_pct(r.get('no_device_rejection_everyday'))}, real device photos
  {_pct(r.get('device_false_rejection'), 1)}.
- **Words.** {_words(r)} {_real_speech(r)}
- **"Not sure".** Answers at least {_pct(r.get('not_sure_below'))} sure were right
  {_pct(r.get('accuracy_when_sure'))} of the time ({_pct(r.get('share_sure'))} of all answers, fused and
  from one input alone reach it); below that the app says **Not sure**, with its best guess.
- **Each subset.** The table also shows each input alone and every pair, on the held-out sets that
  have all three inputs (a typed command in phrasings never trained on).
- **Robustness.** The curves show the accuracy as each input is made worse (noise, blur, covering
  part of the photo, typos).
- **Confusions.** Rows are the truth, columns the prediction: off-diagonal cells are mistakes.
- **Can the weights be trusted?** When the model says an input counted more, removing that input
  really hurts more (Spearman {_fmt(r.get('weight_effect_spearman'))}, target ≥ 0.8; {_by_answer(r)}), and an input
  replaced by noise loses {_pct(r.get('noised_weight_drop'))} of its weight (target ≥ 50 %).
  Definitions: `docs/voice_control.md` ("Measured faithfulness").
- **Do the maps point at the device and the word?** {_maps(r)}

<small>Every number here and in the README comes from `assets/voice_control/eval_results.json`,
written by `{r.get('command') or EVAL_COMMAND}`.</small>
"""


def _words(r: dict) -> str:
    """The word accuracy from speech alone, with the digits and the command words apart (the headline is
    mostly digits)."""
    line = (f"From real speech alone the word was right {_pct(r.get('word_accuracy_real'))} of the time "
            f"({r.get('n_clips', '?')} clips)")
    words = eval_figures.word_accuracy_split(r)
    if not words:
        return line + "."
    few = f"; '{words['fewest'][0]}' has {words['fewest'][1]}" if words["fewest"] else ""
    return (line + f", but most clips are digits: on the word confusion's clips the ten digits were right "
            f"{_pct(words['digits'][0])} ({words['digits'][1]} clips), the ten command words "
            f"{_pct(words['commands'][0])} of only {words['commands'][1]} clips{few}.")


def _real_speech(r: dict) -> str:
    """Where the word fails on every held-out speaker (``real_speech``, written by ``speech_eval --results``):
    by sample rate, in babble, through an 8 kHz line, and the most confused pairs."""
    speech = r.get("real_speech")
    if not isinstance(speech, dict):
        return ""
    rates = "; ".join(f"{plain(str(rate))} {_pct(g.get('accuracy'))} ({g.get('n')} clips)"
                      for rate, g in (speech.get("word_accuracy_by_sample_rate") or {}).items())
    babble = " / ".join(f"{_pct(v)} at {plain(str(k))}" for k, v in (speech.get("word_accuracy_babble_snr") or {}).items())
    pairs = ", ".join(f"'{plain(str(p['said']))}' heard as '{plain(str(p['heard']))}' ({p['n']})"
                      for p in (speech.get("word_confusion_pairs") or [])[:3])
    return (f"On every held-out speaker, with those of the extra Speech Commands folder "
            f"({speech.get('n_clips', '?')} clips): {_pct(speech.get('word_accuracy_real'))}; by sample rate {rates}; "
            f"with other voices babbling {babble}; through an 8 kHz line {_pct(speech.get('word_accuracy_resampled_8khz'))}; "
            f"most confused: {pairs or 'none'} (`{str(r.get('real_speech_command', '')).replace('`', '')}`).")


def _maps(r: dict) -> str:
    """The image map's checks in words: its deletion ratio and its mass on the device (or that the file lacks them)."""
    ratio = (r.get("map_deletion_ratio") or {}).get("image")
    mass, chance = r.get("image_map_mass_on_device"), r.get("image_map_mass_chance")
    parts = []
    if ratio is not None:
        parts.append(f"Masking the 20 % of a photo its map ranks highest costs the answer {float(ratio):.1f}× what a "
                     "random 20 % costs (target ≥ 2).")
    if mass is not None:
        parts.append(f"On held-out device photos set on a background, {_pct(mass)} of the image map falls on the "
                     f"photo ({_pct(chance)} by chance; target ≥ 60 %).")
    if parts and r.get("map_mass_command"):  # these keys are refreshed by their own, shorter command
        parts.append(f"(Written by `{r['map_mass_command'].replace('`', '')}`.)")
    heard = r.get("audio_map_in_speech_share")
    if heard is not None:
        parts.append(f"On held-out real recordings, {_pct(heard, 1)} of the audio map falls inside the spoken word "
                     f"({_pct(r.get('audio_map_in_speech_chance'))} by chance, the word's share of the clip; "
                     "target ≥ 80 %; `python -m mbm.scenarios.voice_control.audio_map_mass`).")
    return " ".join(parts) or "not in this results file."


def _by_answer(r: dict) -> str:
    """The Spearman where the fused answer was right / wrong, in words (or that the file does not split it)."""
    groups = r.get("weight_effect_spearman_by_answer") or {}
    right, wrong = (groups.get(k, {}).get("weight_effect_spearman") for k in ("right", "wrong"))
    if right is None or wrong is None:
        return "not split by answer in this results file"
    return (f"{_fmt(right)} where the answer was right, {_fmt(wrong)} where it was wrong: the drops are in the "
            "probability of the true action, and a wrong answer's weights explain another one")


def _pct(x, digits: int = 0) -> str:
    return "–" if x is None else f"{float(x):.{digits}%}"


def evaluation_view(results):
    """The Evaluation tab from ``evaluation``'s JSON (a message and empty outputs without results)."""
    ok = isinstance(results, dict) and "error" not in results

    def svg(fig, title):  # theme-following SVG (mbm.figures.figure_svg); None without results
        return None if fig is None else figure_svg(fig, title)

    return (evaluation_summary(results), eval_figures.accuracy_table(results) if ok else None,
            svg(eval_figures.robustness_figure(results) if ok else None, "robustness curves"),
            svg(eval_figures.confusion_figure(results, "device") if ok else None, "device confusion matrix"),
            svg(eval_figures.confusion_figure(results, "word") if ok else None, "word confusion matrix"))


def evaluation_tab():
    """The Evaluation tab; returns the event arguments that (re)load it, for its Tab's select event."""
    summary = gr.Markdown("Loading the evaluation results…", elem_id="ev-summary")
    with gr.Row(equal_height=False):
        table = gr.Dataframe(headers=["what", "value"], interactive=False, scale=1, wrap=True,
                             column_widths=["78%", "22%"],
                             label="Action accuracy (share right) and how far the weights can be trusted",
                             elem_id="ev-accuracy")
        # at least ~500 px: the figure is drawn for 576 px and its text shrinks with it
        robustness = gr.HTML(label="Robustness curves", scale=1, min_width=500, elem_id="ev-robustness")
    with gr.Row(equal_height=False):  # side by side on a wide screen, one under the other on a phone
        confusion_device = gr.HTML(label="Device confusion", min_width=420, elem_id="ev-confusion-device")
        confusion_word = gr.HTML(label="Word confusion", min_width=420, elem_id="ev-confusion-word")
    with gr.Accordion("Raw results (what the API returns)", open=False):
        results = gr.JSON(show_label=False, elem_id="ev-json")
    return ({"fn": evaluation, "inputs": None, "outputs": results, "api_name": "evaluation"},
            {"fn": evaluation_view, "inputs": results,
             "outputs": [summary, table, robustness, confusion_device, confusion_word], "api_visibility": "private"})
