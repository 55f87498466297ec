"""mbm web app: a Gradio front end over the ``mbm`` fusion library.

UI only. Every model decision (decoding, preprocessing, prediction, the action
table) lives in ``mbm``; this file builds the page and wires events.

    python app.py                      # http://127.0.0.1:7860
    GRADIO_SERVER_PORT=8080 GRADIO_SERVER_NAME=0.0.0.0 python app.py

The predictor loads once, at import, from the shipped checkpoint, so
``import app`` gives a ready ``app.demo`` without launching a server.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import sys
from pathlib import Path

import gradio as gr
from matplotlib.figure import Figure

from mbm.inference import VoiceControlPredictor, VoiceControlResult
from mbm.preprocess import InputError

ROOT = Path(__file__).resolve().parent
VOICE_CONTROL_EXAMPLES = ROOT / "assets" / "voice_control" / "examples.json"
MAX_FILE_SIZE = "20mb"  # uploads above this are refused by Gradio before they reach the model
CONCURRENCY = 2  # a free CPU Space has 2 cores; one prediction takes a fraction of a second
QUEUE_SIZE = 32  # requests waiting beyond this are told the app is busy

voice_control = VoiceControlPredictor.from_checkpoint()  # checkpoints/voice_control.pt


# --- Presentation helpers (no model logic) ------------------------------------------------------

MODALITY_COLOURS = {"audio": "#2a9d8f", "image": "#e76f51", "text": "#457b9d"}


def modality_weights_figure(weights: dict[str, float], present: list[str]) -> Figure:
    """Horizontal bar chart of per-modality attention weights (absent inputs are labelled so)."""
    fig = Figure(figsize=(5.0, 2.2), dpi=100, layout="constrained")  # not pyplot: no global state
    ax = fig.add_subplot()
    names = list(weights)
    values = [weights[m] for m in names]
    bars = ax.barh(names, values, color=[MODALITY_COLOURS.get(m, "#888888") for m in names])
    ax.bar_label(bars, labels=[f"{v:.2f}" if m in present else "absent (0)" for m, v in zip(names, values)],
                 padding=4)
    ax.set_xlim(0, 1.15)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.invert_yaxis()  # first modality on top
    ax.set_xlabel("share of the fused representation (sums to 1)")
    ax.set_title("How much each input counted", fontsize=11)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig


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


def load_examples(path: Path) -> tuple[list[list], list[str]]:
    """Example rows ``[audio, image, text]`` and captions from ``examples.json``; empty if absent.

    The file holds a list of ``{"audio": path|null, "image": path|null, "text": str|null,
    "caption": str}``; paths are relative to the repository root (or to the file's folder).
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
        for key in ("audio", "image"):
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
        captions.append(entry.get("caption") or " + ".join(Path(x).name if i < 2 else x
                                                           for i, x in enumerate(rows[-1]) if x))
    return rows, captions


# --- Voice control tab --------------------------------------------------------------------------

def predict_voice_control(audio=None, image=None, text=None):
    """Predict a device action from a spoken command, a photo of the device and/or a typed command.

    Any subset of the three inputs works. Returns the top-5 actions, a chart and a status line,
    and the full result as JSON (action, confidence, top, modality_weights, heard, sees, ...).
    """
    try:
        result = voice_control.predict(audio=_file(audio), image=_file(image), text=text or None)
    except InputError as e:
        raise gr.Error(html.escape(str(e), quote=False), title="Nothing to predict from",
                       print_exception=False) from None
    for warning in result.warnings:  # an input was unusable but others were: say so, keep the answer
        gr.Warning(html.escape(warning, quote=False))
    return (dict(result.top), modality_weights_figure(result.modality_weights, result.inputs.present),
            voice_control_status(result), result.to_json())


def voice_control_help() -> str:
    """What the tab does; the device names, words and window length come from the checkpoint."""
    devices = ", ".join(d.replace("_", " ") for d in voice_control.labels["device"])
    words = ", ".join(voice_control.labels["word"])
    seconds = f"{voice_control.cfg.audio.clip_seconds:g}"
    return f"""
Record a spoken command or upload a clip, give a photo of a device, and/or type a command
(*dim the lamp*, *channel 5*), then press **Run**. The model fuses whatever you give it: the same
spoken *up* brightens a lamp, raises blinds or turns the music up, depending on the photo.

**Any subset works.** The chart shows how much each input counted: the weights sum to 1, and an
input you leave out gets exactly 0.

<small>Devices: {devices}. Spoken words: {words}. Only the loudest {seconds} s of a recording is
used.</small>
"""


def voice_control_tab() -> None:
    """The Voice control tab: inputs, outputs, examples and the ``/voice_control`` API event."""
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
            weights = gr.Plot(label="Per-modality attention weights", format="png", elem_id="vc-weights")
            status = gr.Markdown(label="Status", elem_id="vc-status")
            with gr.Accordion("Full result (what the API returns)", open=False):
                details = gr.JSON(label="Result", show_label=False, elem_id="vc-json")
    inputs, outputs = [audio, image, text], [action, weights, status, details]
    clear.add(inputs + outputs)
    run.click(predict_voice_control, inputs, outputs, api_name="voice_control", preprocess=False)
    text.submit(predict_voice_control, inputs, outputs, api_visibility="undocumented", preprocess=False)

    rows, captions = load_examples(VOICE_CONTROL_EXAMPLES)
    if rows:
        with examples_column:
            gr.Examples(rows, inputs, outputs, fn=predict_voice_control, cache_examples=False, run_on_click=True,
                        example_labels=captions, label="Examples: click one to run it", examples_per_page=12)


with gr.Blocks(title="mbm: multimodal fusion demo") as demo:
    gr.Markdown("# mbm: multimodal fusion\nOne model, three inputs (sound, image, text), fused by attention.")
    with gr.Tabs():
        with gr.Tab("Voice control", id="voice_control"):
            voice_control_tab()
        # A "Portrait recognition" tab goes here, built the same way.

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                max_file_size=MAX_FILE_SIZE)
