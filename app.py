"""mbm web app: a Gradio front end over the ``mbm`` fusion library.

UI only. Every model decision (decoding, preprocessing, prediction, the action
table) lives in ``mbm``; this file builds the page and wires events.

    python app.py                      # http://127.0.0.1:7860
    GRADIO_SERVER_PORT=8080 GRADIO_SERVER_NAME=0.0.0.0 python app.py
    MBM_GALLERY_DIR=/data/portrait_gallery python app.py   # where enrolled people are saved
                                       # (default ~/.cache/mbm/portrait_gallery; survives restarts)

The predictors load once, at import, from the shipped checkpoints (and the portrait gallery), so
``import app`` gives a ready ``app.demo`` without launching a server.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image as PILImage

from mbm import viz
from mbm.explain import explain_prediction
from mbm.gallery import DEFAULT_DIR as GALLERY_DEFAULT_DIR
from mbm.gallery import ENV_VAR as GALLERY_ENV_VAR
from mbm.inference import VoiceControlPredictor, VoiceControlResult
from mbm.portrait_inference import MAX_ENROL_PHOTOS, PortraitPredictor, PortraitResult
from mbm.preprocess import InputError
from mbm.report import export_report
from mbm.robustness import predict_corrupted
from mbm.storage import atomic_write

ROOT = Path(__file__).resolve().parent
VOICE_CONTROL_EXAMPLES = ROOT / "assets" / "voice_control" / "examples.json"
PORTRAIT_EXAMPLES = ROOT / "assets" / "portrait" / "examples.json"
EVAL_RESULTS = ROOT / "assets" / "voice_control" / "eval_results.json"  # written by `mbm.evaluate --results`
EVAL_COMMAND = ("python -m mbm.evaluate --scenario voice_control --data ../shared/data --split heldout --json "
                "--results assets/voice_control/eval_results.json")
OUTPUT_IMAGES = Path(tempfile.gettempdir()) / "mbm_output_images"  # see _image_file
MAX_FILE_SIZE = "20mb"  # uploads above this are refused by Gradio before they reach the model


def env_int(name: str, default: int, minimum: int) -> int:
    """An integer setting from the environment; a clear error (not a traceback) for a bad value."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise SystemExit(f"{name}={raw!r}: expected a whole number >= {minimum}")
    return value


# Requests of each kind run at once (MBM_CONCURRENCY overrides). Under `python -m mbm.loadtest`
# p95 was 0.84 s with 4, 1.11 s with 2 and 0.76 s with 8 (within this machine's spread of 4).
CONCURRENCY = env_int("MBM_CONCURRENCY", 4, minimum=1)
# One torch thread per request: with several requests at once on two cores, more threads fight over them
# (python -m mbm.loadtest; the README's Speed section). MBM_THREADS overrides.
torch.set_num_threads(env_int("MBM_THREADS", 1, minimum=1))
QUEUE_SIZE = 32  # requests waiting beyond this are told the app is busy

voice_control = VoiceControlPredictor.from_checkpoint()  # checkpoints/voice_control.pt
# checkpoints/portrait.pt; the gallery persists in $MBM_GALLERY_DIR (default ~/.cache/mbm/portrait_gallery)
portrait = PortraitPredictor.from_checkpoint()


# --- Presentation helpers (no model logic) ------------------------------------------------------

MODALITY_COLOURS = {"audio": "#2a9d8f", "image": "#e76f51", "text": "#457b9d"}
PORTRAIT_COLOURS = {"voice": "#2a9d8f", "face": "#e76f51", "profile": "#457b9d"}  # same hue per input kind


def _share(w: float) -> str:
    """A weight with 2 decimals, or 2 significant digits below 0.01 (a present input never reads 0.00)."""
    return f"{w:.{2 if w >= 0.01 or w <= 0 else 1 - math.floor(math.log10(w))}f}"


def modality_weights_chart(weights: dict[str, float], present: list[str],
                           colours: dict[str, str] = MODALITY_COLOURS) -> str:
    """Horizontal bar chart of per-modality attention weights as inline SVG (absent inputs labelled so).

    The bars are named and ordered by ``weights``' keys (audio/image/text, or face/voice/profile),
    coloured by ``colours`` (grey for a name it lacks). SVG text costs microseconds to build, where a
    matplotlib PNG costs ~80 ms of CPU per request (``python -m mbm.loadtest``; README, Speed).
    """
    label_w, bar_w, row_h, top = 70, 300, 30, 30  # px: name column, full-scale bar, row pitch, title band
    rows = []
    for k, (name, w) in enumerate(weights.items()):
        y = top + k * row_h
        length = max(0.0, min(1.0, float(w))) * bar_w
        text = _share(w) if name in present else "absent (0)"
        rows.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{html.escape(name)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{length:.1f}" height="{row_h - 8}" '
            f'fill="{html.escape(colours.get(name, "#888888"))}"/>'
            f'<text x="{label_w + length + 6:.1f}" y="{y + 15}">{text}</text>')
    height = top + len(weights) * row_h + 22
    axis_y = top + len(weights) * row_h
    ticks = "".join(f'<line x1="{label_w + t * bar_w}" y1="{top}" x2="{label_w + t * bar_w}" y2="{axis_y}" '
                    f'stroke="#ddd"/>' for t in (0, 0.25, 0.5, 0.75, 1.0))
    summary = ", ".join(f"{n} {_share(w) if n in present else 'absent'}" for n, w in weights.items())
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {label_w + bar_w + 60} {height}" '
            f'width="100%" style="max-width:440px;font:13px sans-serif" '
            f'aria-label="attention weights: {html.escape(summary)}">'
            f'<text x="{label_w}" y="18" font-weight="bold">How much each input counted</text>{ticks}'
            + "".join(rows)
            + f'<text x="{label_w}" y="{height - 6}" fill="#555" font-size="11">share of the fused '
              f'representation (sums to 1)</text></svg>')


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~])")


def _plain(text: str) -> str:
    """Escape Markdown so user-controlled text (file names, unknown words) shows literally."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def voice_control_status(result: VoiceControlResult) -> str:
    """The status line: the action, what each input contributed, weights, warnings and notes."""
    present = result.inputs.present
    lines = [f"**{_plain(result.action)}** (confidence {result.confidence:.2f})"]
    if result.summary():
        lines.append(_plain(result.summary()))
    lines.append("attention: " + " · ".join(
        f"{m} {w:.2f}" if m in present else f"{m} 0 (absent)" for m, w in result.modality_weights.items()))
    if result.confidence_without:
        lines.append("confidence without each input: " + " · ".join(
            f"no {m} {p:.2f}" for m, p in result.confidence_without.items()))
    lines += [f"⚠️ {_plain(w)}" for w in result.warnings]
    lines += [f"<small>{_plain(n)}</small>" for n in result.inputs.notes]
    return "  \n".join(lines)  # two spaces + newline: a Markdown line break


def _file(value) -> str | bytes | None:
    """A file input as the library takes it: a path (or bytes for an inline data URL); None if absent.

    Events run with ``preprocess=False`` so that the library, not Gradio, decodes every upload and
    explains what is wrong with a bad one; the value is then Gradio's FileData dict. (Examples run
    with preprocessing, and give a plain path.)
    """
    if value is None or isinstance(value, str):
        return value
    if value.get("path"):
        return value["path"]
    url = value.get("url") or ""
    if url.startswith("data:") and "," in url:
        return base64.b64decode(url.split(",", 1)[1])
    return None


def load_examples(path: Path, file_keys: tuple[str, ...] = ("audio", "image")) -> tuple[list[list], list[str]]:
    """Example rows ``[*files, text]`` and captions from ``examples.json``; empty if absent.

    The file holds a list of ``{"audio": path|null, "image": path|null, "text": str|null,
    "caption": str}`` (the file keys are ``file_keys``: ``("face", "voice")`` for portraits);
    paths are relative to the repository root (or to the file's folder).
    Entries whose files are missing are skipped with a message on stderr.
    """
    if not path.is_file():
        return [], []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"app: ignoring {path}: {e}", file=sys.stderr)
        return [], []
    rows, captions = [], []
    for entry in entries if isinstance(entries, list) else []:
        row, ok = [], isinstance(entry, dict)
        for key in file_keys:
            name = entry.get(key) if ok else None
            if name:
                found = next((p for p in (ROOT / name, path.parent / name) if p.is_file()), None)
                if found is None:
                    print(f"app: skipping example {entry.get('caption')!r}: {name} not found", file=sys.stderr)
                    ok = False
                row.append(str(found) if found else None)
            else:
                row.append(None)
        if not ok:
            continue
        rows.append(row + [entry.get("text") or None])
        captions.append(entry.get("caption") or " + ".join(Path(x).name if i < len(file_keys) else x
                                                           for i, x in enumerate(rows[-1]) if x))
    return rows, captions


# --- Voice control tab --------------------------------------------------------------------------

def _predict(audio, image, text, audio_noise=0.0, image_blur=0.0, image_occlusion=0.0, text_typos=0.0,
             use_audio=True, use_image=True, use_text=True) -> VoiceControlResult:
    """One prediction through ``predict_corrupted`` (levels 0 and every input on = the plain prediction).

    Library errors become a toast (and an AppError for API clients); warnings about an unusable
    input become a warning toast.
    """
    try:
        result = predict_corrupted(voice_control, audio=_file(audio), image=_file(image), text=text or None,
                                   audio_noise=audio_noise or 0.0, image_blur=image_blur or 0.0,
                                   image_occlusion=image_occlusion or 0.0, text_typos=text_typos or 0.0,
                                   use_audio=bool(use_audio), use_image=bool(use_image), use_text=bool(use_text))
    except ValueError as e:  # InputError included: nothing usable, every input switched off, a level outside 0..1
        raise gr.Error(html.escape(str(e), quote=False), title="Nothing to predict from",
                       print_exception=False) from None
    for warning in result.warnings:  # an input was unusable but others were: say so, keep the answer
        gr.Warning(html.escape(warning, quote=False))
    return result


def _prediction_outputs(result: VoiceControlResult) -> tuple:
    """The four outputs of ``/voice_control``: top-5 label, weights chart, status line, JSON."""
    return (dict(result.top), modality_weights_chart(result.modality_weights, result.inputs.present),
            voice_control_status(result), result.to_json())


def predict_voice_control(audio=None, image=None, text=None):
    """Predict a device action from a spoken command, a photo of the device and/or a typed command.

    Any subset of the three inputs works. Returns the top-5 actions, a chart and a status line,
    and the full result as JSON (action, confidence, top, modality_weights, heard, sees, ...).
    """
    return _prediction_outputs(_predict(audio, image, text))


def _no_nan(rows: list[list]) -> list[list]:
    """Table rows with NaN cells (no measured effect) as empty cells."""
    return [[None if isinstance(x, float) and math.isnan(x) else x for x in row] for row in rows]


def _tokens(tokens: list[str] | None) -> list[tuple[str, str | None]] | None:
    """The words the model read, as separate boxes for gr.HighlightedText."""
    if tokens is None:
        return None
    return [p for k, t in enumerate(tokens) for p in ([(" ", None)] if k else []) + [(t, "token")]]


def _image_file(image) -> str | None:
    """An output image (H, W, 3) uint8 as a PNG file named by its content, written atomically.

    Gradio saves an array output by rewriting one file per content in place, so two identical
    answers at once can serve a half-written file (``python -m mbm.loadtest`` saw truncated
    downloads); a path written atomically is copied into its cache atomically instead.
    """
    if image is None:
        return None
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    data = buffer.getvalue()
    path = OUTPUT_IMAGES / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    if not path.is_file():
        atomic_write(path, lambda f: f.write(data), fsync=False)
    return str(path)


def voice_control_view(audio=None, image=None, text=None, audio_noise=0.0, image_blur=0.0, image_occlusion=0.0,
                       text_typos=0.0, use_audio=True, use_image=True, use_text=True):
    """The page's Run (and every robustness control): the prediction and its whole explanation."""
    result = _predict(audio, image, text, audio_noise, image_blur, image_occlusion, text_typos,
                      use_audio, use_image, use_text)
    ex = explain_prediction(result)
    view = ex["model_view"]
    return (*_prediction_outputs(result), ex["flag_text"], ex["figure"], _image_file(ex["image_overlay"]),
            ex["text_highlights"] or [("no text given (or switched off): no map", None)],
            ex["audio_figure"], ex["weights_figure"], _no_nan(ex["effects_table"]),
            _image_file(None if view["image"] is None else view["image"].repeat(3, 0).repeat(3, 1)),  # 64 px: larger
            _image_file(view["mel_image"]), _tokens(view["tokens"]), ex["json"])


def rerun_voice_control(audio=None, image=None, text=None, *controls):
    """A slider or switch moved: predict again with the new settings (nothing given yet: change nothing)."""
    if audio is None and image is None and not (text or "").strip():
        return tuple(gr.skip() for _ in range(15))
    return voice_control_view(audio, image, text, *controls)


def voice_control_explain(audio=None, image=None, text=None, audio_noise=0.0, image_blur=0.0, image_occlusion=0.0,
                          text_typos=0.0, use_audio=True, use_image=True, use_text=True):
    """The explanation of a prediction as JSON, after optional corruptions (levels 0..1) and switches.

    Returns ``{"prediction": ..., "effects": {"weights", "confidence", "confidence_without", "drop",
    "disagree", "disagreeing_pairs", "margins"}, "maps": {"image_grid", "text", "audio_frames"},
    "created"}``; a map is null for an absent (or switched-off) input.
    """
    result = _predict(audio, image, text, audio_noise, image_blur, image_occlusion, text_typos,
                      use_audio, use_image, use_text)
    return explain_prediction(result)["json"]


def voice_control_report(audio=None, image=None, text=None, audio_noise=0.0, image_blur=0.0, image_occlusion=0.0,
                         text_typos=0.0, use_audio=True, use_image=True, use_text=True):
    """The report card of a prediction (same inputs as /voice_control_explain): [PNG, HTML, JSON] files.

    The PNG is the aligned explanation figure, the HTML is self-contained (images inlined), the
    JSON holds the raw numbers (what /voice_control_explain returns).
    """
    result = _predict(audio, image, text, audio_noise, image_blur, image_occlusion, text_typos,
                      use_audio, use_image, use_text)
    paths = export_report(result, tempfile.mkdtemp(prefix="mbm_report_"))
    return [str(paths[k]) for k in ("png", "html", "json")]


def voice_control_help() -> str:
    """What the tab does; the device names, words and window length come from the checkpoint."""
    devices = ", ".join(d.replace("_", " ") for d in voice_control.labels["device"])
    words = ", ".join(voice_control.labels["word"])
    seconds = f"{voice_control.cfg.audio.clip_seconds:g}"
    return f"""
Record a spoken command or upload a clip, give a photo of a device, and/or type a command
(*turn off the fan*, *open the blinds*), then press **Run**. The model fuses whatever you give it: the same
spoken *up* brightens a lamp, raises blinds or turns the music up, depending on the photo.

**Any subset works.** The chart shows how much each input counted: the weights sum to 1, and an
input you leave out gets exactly 0. Below, **Explanation** shows where inside each input the model
looked and whether the weights agree with what removing each input measurably does; the
**robustness** controls switch inputs off or corrupt them and predict again at once.

<small>Devices: {devices}. Spoken words: {words}. Only the loudest {seconds} s of a recording is
used.</small>
"""


def voice_control_tab() -> None:
    """The Voice control tab: inputs, prediction, robustness controls, explanation, export, API events."""
    gr.Markdown(voice_control_help())
    with gr.Row(equal_height=False):
        with gr.Column():
            audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Spoken command",
                             elem_id="vc-audio")
            image = gr.Image(sources=["upload", "webcam"], type="filepath", image_mode=None,
                             label="Photo of the device", height=260, elem_id="vc-image")
            text = gr.Textbox(label="Typed command (optional)", placeholder="e.g. dim the lamp, channel 5",
                              max_lines=1, elem_id="vc-text")
            with gr.Row():
                clear = gr.ClearButton(value="Clear")
                run = gr.Button("Run", variant="primary", elem_id="vc-run")
            examples_column = gr.Column()  # filled below, once the outputs exist
        with gr.Column():
            action = gr.Label(num_top_classes=5, label="Action (top 5)", elem_id="vc-action")
            weights = gr.HTML(label="Per-modality attention weights", elem_id="vc-weights")
            status = gr.Markdown(label="Status", elem_id="vc-status")
            flag = gr.Markdown(elem_id="vc-flag")
            with gr.Accordion("Live robustness: switch inputs off, corrupt them", open=True,
                              elem_id="vc-robustness"):
                with gr.Row():
                    use_audio = gr.Checkbox(True, label="use audio", elem_id="vc-use-audio", min_width=100)
                    use_image = gr.Checkbox(True, label="use image", elem_id="vc-use-image", min_width=100)
                    use_text = gr.Checkbox(True, label="use text", elem_id="vc-use-text", min_width=100)
                with gr.Row():
                    audio_noise = gr.Slider(0, 1, 0, step=0.05, label="audio noise", elem_id="vc-audio-noise")
                    text_typos = gr.Slider(0, 1, 0, step=0.05, label="text typos", elem_id="vc-text-typos")
                with gr.Row():
                    image_blur = gr.Slider(0, 1, 0, step=0.05, label="image blur", elem_id="vc-image-blur")
                    image_occlusion = gr.Slider(0, 1, 0, step=0.05, label="image occlusion",
                                                elem_id="vc-image-occlusion")
            with gr.Accordion("Full result (what the API returns)", open=False):
                details = gr.JSON(label="Result", show_label=False, elem_id="vc-json")

    with gr.Accordion("Explanation", open=True, elem_id="vc-explanation"):
        with gr.Tabs():
            with gr.Tab("Where the model looked", id="vc-where"):
                with gr.Row(equal_height=False):
                    heatmap = gr.Image(label="Image attention over the crop the model saw", interactive=False,
                                       format="png", height=300, scale=2, elem_id="vc-heatmap")
                    with gr.Column(scale=5):
                        audio_plot = gr.Plot(label="Audio attention over the waveform and log-mel", format="png",
                                             elem_id="vc-audio-plot")
                        highlights = gr.HighlightedText(label="Text attention per word (darker = more)",
                                                        show_legend=False, show_inline_category=False,
                                                        elem_id="vc-highlights")
            with gr.Tab("Weights vs measured effect", id="vc-effects-tab"):
                with gr.Row(equal_height=False):
                    effects_plot = gr.Plot(label="Weights beside the confidence drop without each input",
                                           show_label=False, format="png", scale=3, elem_id="vc-effects-plot")
                    effects_table = gr.Dataframe(headers=["input", "weight", "p(action) without it", "drop"],
                                                 interactive=False, scale=2, label="Measured effects",
                                                 elem_id="vc-effects-table")
            with gr.Tab("Aligned figure", id="vc-figure-tab"):
                figure = gr.Plot(label="The whole explanation in one figure (as in the report card)",
                                 format="png", elem_id="vc-figure")
            with gr.Tab("What the model sees", id="vc-sees"):
                with gr.Row(equal_height=False):
                    seen_crop = gr.Image(label="Image: the crop the model saw", interactive=False, format="png",
                                         height=200, scale=1, elem_id="vc-seen-crop")
                    seen_mel = gr.Image(label="Audio: the log-mel it heard (low bands at the bottom)",
                                        interactive=False, format="png", height=200, scale=2,
                                        elem_id="vc-seen-mel")
                seen_tokens = gr.HighlightedText(label="Text: the words it read", show_legend=False,
                                                 show_inline_category=False, elem_id="vc-seen-tokens")
            with gr.Tab("Export report card", id="vc-export-tab"):
                gr.Markdown("The current prediction (with the settings above) as a report card for a slide "
                            "deck: the aligned figure as **PNG**, a self-contained **HTML** page (images "
                            "inlined) and the raw numbers as **JSON**.")
                export = gr.Button("Export report card", elem_id="vc-export")
                report_files = gr.File(label="Report card", file_count="multiple", interactive=False,
                                       elem_id="vc-report")
            with gr.Tab("Numbers (JSON)", id="vc-explain-json-tab"):
                explain_json = gr.JSON(label="Explanation (what /voice_control_explain returns)",
                                       elem_id="vc-explain-json")

    inputs = [audio, image, text]
    controls = [audio_noise, image_blur, image_occlusion, text_typos, use_audio, use_image, use_text]
    outputs = [action, weights, status, details]
    view_outputs = outputs + [flag, figure, heatmap, highlights, audio_plot, effects_plot, effects_table,
                              seen_crop, seen_mel, seen_tokens, explain_json]
    clear.add(inputs + view_outputs + [report_files])
    view = dict(fn=voice_control_view, inputs=inputs + controls, outputs=view_outputs, preprocess=False,
                api_visibility="undocumented")
    run.click(**view)
    text.submit(**view)
    rerun = dict(view, fn=rerun_voice_control, api_visibility="private", trigger_mode="always_last")
    for slider in controls[:4]:
        slider.release(**rerun)
    for switch in controls[4:]:
        switch.change(**rerun)
    export.click(voice_control_report, inputs + controls, report_files, api_name="voice_control_report",
                 preprocess=False)

    # API-only endpoints (the page reaches the same functions through the events above).
    with gr.Row(visible=False):
        api_predict = gr.Button("predict", elem_id="vc-api-predict")
        api_explain = gr.Button("explain", elem_id="vc-api-explain")
    api_predict.click(predict_voice_control, inputs, outputs, api_name="voice_control", preprocess=False)
    api_explain.click(voice_control_explain, inputs + controls, explain_json, api_name="voice_control_explain",
                      preprocess=False)

    rows, captions = load_examples(VOICE_CONTROL_EXAMPLES)
    if rows:
        with examples_column:
            examples = gr.Examples(rows, inputs, example_labels=captions, label="Examples: click one to run it",
                                   examples_per_page=12)
        examples.load_input_event.then(**dict(view, api_visibility="private"))


# --- Evaluation tab -----------------------------------------------------------------------------

def evaluation():
    """The held-out evaluation of the shipped voice-control checkpoint (``eval_results.json``) as JSON.

    Accuracy per modality subset, our fusion beside late fusion, confusion matrices, robustness
    curves and the faithfulness metrics; ``{"error": ..., "command": ...}`` when the file is missing.
    """
    rel = EVAL_RESULTS.relative_to(ROOT)
    try:
        results = viz.load_eval_results(EVAL_RESULTS)
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
        return (f"⚠️ {_plain(error)}.\n\nWrite it with (from the repository root):\n\n"
                f"```\n{(results or {}).get('command') or EVAL_COMMAND}\n```")
    r = results
    return f"""
Measured on the **{_plain(str(r.get('split', '?')))}** split ({r.get('n_clips', '?')} clips, {r.get('n_photos', '?')}
photos: {r.get('n_pairs', '?')} audio + image pairs, {r.get('n_triples', '?')} triples with a typed command in
unseen phrasings) with the shipped checkpoint, {_plain(str(r.get('created', '?')))}.

**Our fusion {_fmt(r.get('action_accuracy'))}** vs late fusion (average of the audio-only and
image-only predictions) **{_fmt(r.get('late_fusion_action_accuracy'))}** action accuracy on audio + image;
with a typed command {_fmt(r.get('action_accuracy_with_text'))} vs {_fmt(r.get('late_fusion_action_accuracy_with_text'))}.
Faithfulness: weight/effect Spearman {_fmt(r.get('weight_effect_spearman'))} (target ≥ 0.8),
noised-weight drop {_fmt(r.get('noised_weight_drop'))} (target ≥ 0.5; with kinds of noise training never used
{_fmt(r.get('noised_weight_drop_unseen_noise'))}); definitions in `docs/explanations.md`.

<small>The numbers come from `assets/voice_control/eval_results.json`, written by
`{r.get('command') or EVAL_COMMAND}`.</small>
"""


def evaluation_view(results):
    """The Evaluation tab from ``evaluation``'s JSON (a message and empty outputs without results)."""
    ok = isinstance(results, dict) and "error" not in results
    return (evaluation_summary(results), viz.accuracy_table(results) if ok else None,
            viz.robustness_figure(results) if ok else None, viz.confusion_figure(results, "device") if ok else None,
            viz.confusion_figure(results, "word") if ok else None)


def evaluation_tab():
    """The Evaluation tab; returns the event arguments that (re)load it, for its Tab's select event."""
    summary = gr.Markdown("Loading the evaluation results…", elem_id="ev-summary")
    with gr.Row(equal_height=False):
        table = gr.Dataframe(headers=["what", "action accuracy"], interactive=False, scale=2, wrap=True,
                             column_widths=["72%", "28%"],
                             label="Accuracy per modality subset · our fusion vs late fusion", elem_id="ev-accuracy")
        robustness = gr.Plot(label="Robustness curves", show_label=False, format="png", scale=3, elem_id="ev-robustness")
    with gr.Row(equal_height=False):
        confusion_device = gr.Plot(label="Device confusion", show_label=False, format="png", elem_id="ev-confusion-device")
        confusion_word = gr.Plot(label="Word confusion", show_label=False, format="png", elem_id="ev-confusion-word")
    with gr.Accordion("Raw results (what the API returns)", open=False):
        results = gr.JSON(show_label=False, elem_id="ev-json")
    return (dict(fn=evaluation, inputs=None, outputs=results, api_name="evaluation"),
            dict(fn=evaluation_view, inputs=results,
                 outputs=[summary, table, robustness, confusion_device, confusion_word], api_visibility="private"))


# --- Portrait recognition tab -------------------------------------------------------------------

def _user_error(e: Exception, title: str) -> gr.Error:
    """A library InputError/ValueError as a toast for the user (and an AppError for API clients)."""
    return gr.Error(html.escape(str(e), quote=False), title=title, print_exception=False)


def _files(value) -> list:
    """A multiple-file input (a list of FileData dicts, or paths from an example) as paths/bytes."""
    if value is None:
        return []
    if isinstance(value, (str, dict)):  # one file where a list was expected (e.g. from an API client)
        value = [value]
    return [f for f in (_file(v) for v in value) if f is not None]


def portrait_status(result: PortraitResult, present: list[str]) -> str:
    """The status line: who (or unknown), the match score, the weights, notes and the composed note."""
    if result.identity == "unknown":
        nearest = result.top5[0] if result.top5 else None
        lines = ["**unknown**: nobody in the gallery is close enough"
                 + (f" (nearest {_plain(nearest[0])}, score {nearest[1]:.2f} < threshold {result.threshold:.2f})"
                    if nearest else "")]
    else:
        lines = [f"**{_plain(result.identity)}** (score {result.score:.2f}, threshold {result.threshold:.2f})"]
    lines.append("attention: " + " · ".join(
        f"{m} {_share(w)}" if m in present else f"{m} 0 (absent)" for m, w in result.modality_weights.items()))
    lines += [f"⚠️ {_plain(n)}" for n in result.notes]
    lines.append(f"<small>{_plain(portrait.note[0].upper() + portrait.note[1:])}.</small>")
    return "  \n".join(lines)


def predict_portrait(face=None, voice=None, text=None):
    """Identify a person from a face photo, a voice clip and/or a short text profile.

    Any subset works. Returns the identity (top 5 with scores, or "unknown"), a chart of the
    per-modality weights (face/voice/profile, sum to 1, absent = 0), the face crop the model used,
    a status line, and the full result as JSON (identity, score, threshold, top5, modality_weights, notes).
    """
    face, voice, text = _file(face), _file(voice), (text or "").strip() or None
    try:
        result = portrait.predict(face=face, voice=voice, text=text)
    except ValueError as e:  # InputError included: no input, no face found, silent clip, ...
        raise _user_error(e, "Cannot recognise") from None
    for note in result.notes:  # e.g. several faces: the largest was used
        gr.Warning(html.escape(note, quote=False))
    present = [m for m, given in (("face", face), ("voice", voice), ("profile", text)) if given is not None]
    label = dict(result.confidences) if result.identity != "unknown" else "unknown"
    return (label, modality_weights_chart(result.modality_weights, present, PORTRAIT_COLOURS),
            _image_file(result.face_crop), portrait_status(result, present), result.to_json())


def enroll(name=None, photos=None, voice=None, profile=None):
    """Enrol a person without retraining: a name, 1-5 photos of their face, optionally a voice clip and profile.

    Returns a status line and JSON ``{"name", "photos", "voice", "profile"}``; the person is
    recognised from the next request on, and the gallery is saved.
    """
    try:
        info = portrait.enrol(name if isinstance(name, str) else "", _files(photos), voice=_file(voice),
                              profile=(profile or "").strip() or None)
    except ValueError as e:  # unsafe/empty/existing name, 0 or > 5 photos, no face or several faces
        raise _user_error(e, "Cannot enrol") from None
    extras = [x for x, given in (("a voice", info["voice"]), ("a profile", info["profile"])) if given]
    status = (f"Enrolled **{_plain(info['name'])}** from {info['photos']} photo{'s' * (info['photos'] > 1)}"
              + (" and " + " and ".join(extras) if extras else "") + "; recognised from now on.")
    return status, info


def remove_person(name=None):
    """Remove an enrolled person by name. Returns a status line and JSON ``{"removed": name, "people": n}``."""
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise gr.Error("choose or type the name of the person to remove", title="Cannot remove",
                       print_exception=False)
    try:
        portrait.remove(name)
    except ValueError as e:
        raise _user_error(e, "Cannot remove") from None
    return f"Removed **{_plain(name)}**.", {"removed": name, "people": len(portrait.list_people())}


def list_people():
    """Everyone in the gallery: ``[{"name", "photos", "voice", "profile", "composed"}, ...]``."""
    return portrait.list_people()


PEOPLE_COLUMNS = ["name", "photos", "voice", "profile", "composed"]


def people_view(people):
    """The People table and the Remove choices from ``list_people``'s JSON."""
    people = people if isinstance(people, list) else []
    rows = [[p.get(c) for c in PEOPLE_COLUMNS] for p in people]
    return rows, gr.Dropdown(choices=[p["name"] for p in people], value=None)


def portrait_help() -> str:
    """What the tab does, with the gallery folder and the composed-identities note."""
    return f"""
Give a face photo (upload or webcam), a voice clip (record or upload) and/or a short text profile
(*tall, wears glasses, works in the lab*), then press **Run**: the person's name among the enrolled
people with the top 5, or **unknown** when nobody is close enough. The chart shows how much each
input counted (sum to 1, an input you leave out gets exactly 0); beside it, the face the model cropped.
**Enrol** adds a person from 1–{MAX_ENROL_PHOTOS} photos, no retraining; they are recognised at once.

> **Note:** {html.escape(portrait.note[0].upper() + portrait.note[1:])}.

<small>The gallery is saved in `${GALLERY_ENV_VAR}` (default `{GALLERY_DEFAULT_DIR}`) and survives
restarts; it starts as the shipped gallery of 42 people (ORL s1–s35 and Yale subjects, minus a few
held out as strangers).</small>
"""


def portrait_tab():
    """The Portrait recognition tab; returns the event that fills the People list on page load."""
    gr.Markdown(portrait_help(), elem_id="pt-help")
    with gr.Row(equal_height=False):
        with gr.Column():
            face = gr.Image(sources=["upload", "webcam"], type="filepath", image_mode=None, label="Face photo",
                            height=260, elem_id="pt-face")
            voice = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Voice clip",
                             elem_id="pt-voice")
            text = gr.Textbox(label="Text profile (optional)", max_lines=2, elem_id="pt-text",
                              placeholder="e.g. tall, wears glasses, works in the lab, speaks with a Scottish accent")
            with gr.Row():
                clear = gr.ClearButton(value="Clear", elem_id="pt-clear")
                run = gr.Button("Run", variant="primary", elem_id="pt-run")
            examples_column = gr.Column()  # filled below, once the outputs exist
        with gr.Column():
            identity = gr.Label(num_top_classes=5, label="Identity (top 5, or unknown)", elem_id="pt-identity")
            with gr.Row(equal_height=False):
                weights = gr.HTML(label="Per-modality attention weights", elem_id="pt-weights", scale=3)
                crop = gr.Image(label="Face used", interactive=False, height=170, scale=1, elem_id="pt-crop")
            status = gr.Markdown(label="Status", elem_id="pt-status")
            with gr.Accordion("Full result (what the API returns)", open=False):
                details = gr.JSON(label="Result", show_label=False, elem_id="pt-json")
    inputs, outputs = [face, voice, text], [identity, weights, crop, status, details]
    clear.add(inputs + outputs)
    run.click(predict_portrait, inputs, outputs, api_name="portrait", preprocess=False)
    text.submit(predict_portrait, inputs, outputs, api_visibility="undocumented", preprocess=False)
    rows, captions = load_examples(PORTRAIT_EXAMPLES, file_keys=("face", "voice"))
    if rows:
        with examples_column:
            gr.Examples(rows, inputs, outputs, fn=predict_portrait, cache_examples=False, run_on_click=True,
                        example_labels=captions, label="Examples: click one to run it")

    with gr.Accordion("Enrol a person · People in the gallery", open=True):
        with gr.Row(equal_height=False):
            with gr.Column():
                name = gr.Textbox(label="Name", max_lines=1, placeholder="e.g. Ada Lovelace", elem_id="pt-enrol-name")
                photos = gr.File(file_count="multiple", file_types=["image", ".pgm"], height=140,
                                 label=f"1–{MAX_ENROL_PHOTOS} photos of their face (one face each)",
                                 elem_id="pt-enrol-photos")
                enrol_voice = gr.Audio(sources=["microphone", "upload"], type="filepath",
                                       label="Voice clip (optional)", elem_id="pt-enrol-voice")
                profile = gr.Textbox(label="Profile (optional)", max_lines=2, elem_id="pt-enrol-profile",
                                     placeholder="e.g. short, has curly hair, works in the library")
                enrol = gr.Button("Enrol", variant="primary", elem_id="pt-enrol")
                enrol_status = gr.Markdown(elem_id="pt-enrol-status")
                enrol_json = gr.JSON(visible=False)
            with gr.Column():
                people = gr.Dataframe(headers=PEOPLE_COLUMNS, interactive=False, max_height=360, wrap=True,
                                      column_widths=["20%", "12%", "11%", "45%", "12%"], label="People",
                                      elem_id="pt-people")
                refresh = gr.Button("Refresh the list", elem_id="pt-refresh")
                with gr.Row(equal_height=True):
                    remove_name = gr.Dropdown(choices=[], allow_custom_value=True, label="Person to remove",
                                              scale=3, elem_id="pt-remove-name")
                    remove = gr.Button("Remove", variant="stop", scale=1, elem_id="pt-remove")
                remove_status = gr.Markdown(elem_id="pt-remove-status")
                remove_json = gr.JSON(visible=False)
                people_json = gr.JSON(visible=False)

    show_people = dict(fn=people_view, inputs=people_json, outputs=[people, remove_name],
                       api_visibility="private")
    refresh_people = dict(fn=list_people, inputs=None, outputs=people_json, api_visibility="private")
    refresh.click(list_people, None, people_json, api_name="list_people").then(**show_people)
    enrol.click(enroll, [name, photos, enrol_voice, profile], [enrol_status, enrol_json], api_name="enroll",
                preprocess=False).success(**refresh_people).then(**show_people)
    remove.click(remove_person, remove_name, [remove_status, remove_json], api_name="remove_person",
                 preprocess=False).success(**refresh_people).then(**show_people)
    return refresh_people, show_people


with gr.Blocks(title="mbm: multimodal fusion demo") as demo:
    gr.Markdown("# mbm: multimodal fusion\nOne model, three inputs (sound, image, text), fused by attention.")
    with gr.Tabs():
        with gr.Tab("Voice control", id="voice_control"):
            voice_control_tab()
        with gr.Tab("Portrait recognition", id="portrait"):
            refresh_people, show_people = portrait_tab()
        with gr.Tab("Evaluation", id="evaluation", elem_id="evaluation-tab") as evaluation_tab_:
            load_evaluation, show_evaluation = evaluation_tab()
    evaluation_tab_.select(**load_evaluation).then(**show_evaluation)  # read afresh: the file may be rewritten
    demo.load(**refresh_people).then(**show_people)  # the People list, as saved now

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME"),
                server_port=env_int("GRADIO_SERVER_PORT", 7860, minimum=1),
                max_file_size=MAX_FILE_SIZE)
