"""The Voice control tab: a spoken command + a photo + typed text -> a device action, explained.

The layout (inputs beside the answer, the robustness controls, the explanation's tabs) and the events that
wire it to the handlers in ``mbm.ui.voice_control_handlers``.
"""

from __future__ import annotations

import json

import gradio as gr

from mbm.limits import HEAVY_CONCURRENCY_ID
from mbm.paths import VOICE_CONTROL_EXAMPLES
from mbm.ui.common import REQUEST_ID_JS, cancel_on, echo_markdown
from mbm.ui.examples import example_cards, load_examples
from mbm.ui.voice_control_handlers import (
    IMAGE_MAP_LABEL,
    NO_ANSWER_YET,
    SHOW_ANSWER,
    predict_voice_control,
    rerun_voice_control,
    voice_control_explain,
    voice_control_help,
    voice_control_report,
    voice_control_view,
)


def voice_control_tab() -> None:
    """The Voice control tab: inputs, prediction, robustness controls, explanation, export, API events."""
    short, full = voice_control_help()
    gr.Markdown(short, elem_id="vc-help")
    examples_row = gr.Row()  # the examples come first (filled by _wire, once the outputs exist)
    with gr.Accordion("How to read this page", open=False):
        gr.Markdown(full)
    with gr.Row(equal_height=False):
        with gr.Column():
            c = _inputs()
        with gr.Column():
            c.update(_answer())
    c.update(_explanation())
    _wire(c, examples_row)


def _inputs() -> dict:
    """The spoken command, the photo, the typed command, Clear and Run, by name."""
    c = {"audio": gr.Audio(sources=["microphone", "upload"], type="filepath", label="Spoken command",
                           elem_id="vc-audio"),
         "image": gr.Image(sources=["upload", "webcam"], type="filepath", image_mode=None,
                           label="Photo of the device", height=260, elem_id="vc-image"),
         "text": gr.Textbox(label="Typed command (optional)", placeholder="e.g. dim the lamp, channel 5",
                            max_lines=1, elem_id="vc-text")}
    with gr.Row():
        c["clear"] = gr.ClearButton(value="Clear", elem_id="vc-clear")
        c["run"] = gr.Button("Run", variant="primary", elem_id="vc-run")
    return c


def _answer() -> dict:
    """The answer at a glance, the top 5, the weights, the status, and the robustness controls, by name."""
    # the answer at a glance (its look follows the confidence); the top 5 below without a big heading,
    # which looked as sure at 10 % as at 90 %
    c = {"headline": gr.HTML(NO_ANSWER_YET, elem_id="vc-headline"),
         "action": gr.Label(num_top_classes=5, label="Action (top 5)", show_heading=False, elem_id="vc-action"),
         "weights": gr.HTML(label="Per-modality attention weights", elem_id="vc-weights"),
         "status": echo_markdown(label="Status", elem_id="vc-status"),
         "flag": gr.Markdown(elem_id="vc-flag")}
    with gr.Accordion("Live robustness: switch inputs off, corrupt them", open=True, elem_id="vc-robustness"):
        with gr.Row():
            for m in ("audio", "image", "text"):
                c[f"use_{m}"] = gr.Checkbox(True, label=f"use {m}", elem_id=f"vc-use-{m}", min_width=100)
        with gr.Row():
            c["audio_noise"] = gr.Slider(0, 1, 0, step=0.05, label="audio noise", elem_id="vc-audio-noise")
            c["text_typos"] = gr.Slider(0, 1, 0, step=0.05, label="text typos", elem_id="vc-text-typos")
        with gr.Row():
            c["image_blur"] = gr.Slider(0, 1, 0, step=0.05, label="image blur", elem_id="vc-image-blur")
            c["image_occlusion"] = gr.Slider(0, 1, 0, step=0.05, label="image occlusion",
                                             elem_id="vc-image-occlusion")
    with gr.Accordion("Full result (what the API returns)", open=False):
        c["details"] = gr.JSON(label="Result", show_label=False, elem_id="vc-json")
    return c


def _explanation() -> dict:
    """The explanation's tabs: where the answer comes from, weights vs measured effect, the aligned figure,
    what the model sees, the report card's export and the numbers, by name."""
    c = {}
    with gr.Accordion("Explanation", open=True, elem_id="vc-explanation"), gr.Tabs(overflow_behavior="wrap"):
        with gr.Tab("Where the answer comes from", id="vc-where"):
            gr.Markdown("<small>Occlusion maps: how much the answer's probability drops when each part "
                        "of an input is masked. Checked on held-out data: masking the top 20 % costs "
                        "more than twice what a random 20 % costs (`map_deletion_ratio`). The attention "
                        "weights, which fail that check for text, are under **Numbers (JSON)** "
                        "(`token_weights`).</small>")
            with gr.Row(equal_height=False):
                c["heatmap"] = gr.Image(label=IMAGE_MAP_LABEL, interactive=False, format="png", height=300, scale=2,
                                        elem_id="vc-heatmap")
                with gr.Column(scale=5):
                    c["audio_plot"] = gr.HTML(label="Audio: what the answer needs, over time", show_label=True,
                                              container=True, elem_id="vc-audio-plot")
                    c["highlights"] = gr.HighlightedText(
                        label="Text: what the answer needs per word (darker = more)", show_legend=False,
                        show_inline_category=False, elem_id="vc-highlights")
        with gr.Tab("Weights vs measured effect", id="vc-effects-tab"), gr.Row(equal_height=False):
            c["effects_plot"] = gr.HTML(label="Weights beside the confidence drop without each input",
                                        scale=3, elem_id="vc-effects-plot")
            c["effects_table"] = gr.Dataframe(headers=["input", "weight", "p(action) without it", "drop"],
                                              interactive=False, scale=2, label="Measured effects",
                                              elem_id="vc-effects-table")
        with gr.Tab("Aligned figure", id="vc-figure-tab"):
            c["figure"] = gr.HTML(label="The whole explanation in one figure (as in the report card)",
                                  show_label=True, container=True, elem_id="vc-figure")
        with gr.Tab("What the model sees", id="vc-sees"):
            with gr.Row(equal_height=False):
                c["seen_crop"] = gr.Image(label="Image: the crop the model saw", interactive=False, format="png",
                                          height=200, scale=1, elem_id="vc-seen-crop")
                c["seen_mel"] = gr.Image(label="Audio: the log-mel it heard (low bands at the bottom)",
                                         interactive=False, format="png", height=200, scale=2,
                                         elem_id="vc-seen-mel")
            c["seen_tokens"] = gr.HighlightedText(label="Text: the words it read", show_legend=False,
                                                  show_inline_category=False, elem_id="vc-seen-tokens")
        with gr.Tab("Export report card", id="vc-export-tab"):
            gr.Markdown("The current prediction (with the settings above) as a report card for a slide "
                        "deck: the aligned figure as **PNG**, a self-contained **HTML** page (images "
                        "inlined) and the raw numbers as **JSON**.")
            c["export"] = gr.Button("Export report card", elem_id="vc-export")
            c["report_files"] = gr.File(label="Report card", file_count="multiple", interactive=False,
                                        elem_id="vc-report")
        with gr.Tab("Numbers (JSON)", id="vc-explain-json-tab"):
            c["explain_json"] = gr.JSON(label="Explanation (what /voice_control_explain returns)",
                                        elem_id="vc-explain-json")
    return c


def _wire(c: dict, examples_row) -> None:
    """The events: Run and Enter, every robustness control (predict again at once), Clear (cancels what runs),
    the export, the API-only endpoints and the examples."""
    inputs = [c["audio"], c["image"], c["text"]]
    controls = [c[k] for k in ("audio_noise", "image_blur", "image_occlusion", "text_typos", "use_audio", "use_image",
                               "use_text")]
    outputs = [c["action"], c["weights"], c["status"], c["details"]]
    view_outputs = outputs + [c[k] for k in ("headline", "flag", "figure", "heatmap", "highlights", "audio_plot",
                                             "effects_plot", "effects_table", "seen_crop", "seen_mel", "seen_tokens",
                                             "explain_json")]
    clear, headline = c["clear"], c["headline"]
    clear.add(inputs + [o for o in view_outputs if o is not headline] + [c["report_files"]])
    clear.click(None, None, headline, js=f"() => {json.dumps(NO_ANSWER_YET)}", api_visibility="private", queue=False)
    heavy = {"concurrency_id": HEAVY_CONCURRENCY_ID}  # one limit shared by every event that decodes files
    # Every request the page paints is numbered (REQUEST_ID_JS) and runs at once ("multiple"): an older one
    # still running then paints nothing (common.Newest), and Clear cancels them (common.cancel_on).
    request_id = gr.Number(visible=False, elem_id="vc-request-id")
    view = dict(fn=voice_control_view, inputs=inputs + controls + [request_id], outputs=view_outputs,
                preprocess=False, api_visibility="undocumented", js=REQUEST_ID_JS, trigger_mode="multiple", **heavy)
    requests = [c["run"].click(**view), c["text"].submit(**view)]
    for request in requests:  # on a phone the answer is below the inputs
        request.then(**SHOW_ANSWER)
    rerun = dict(view, fn=rerun_voice_control, api_visibility="private")
    for slider in controls[:4]:
        requests.append(slider.release(**rerun))
    for switch in controls[4:]:
        requests.append(switch.change(**rerun))
    c["export"].click(voice_control_report, inputs + controls, c["report_files"], api_name="voice_control_report",
                      preprocess=False, **heavy)

    # API-only endpoints (the page reaches the same functions through the events above).
    with gr.Row(visible=False):
        api_predict = gr.Button("predict", elem_id="vc-api-predict")
        api_explain = gr.Button("explain", elem_id="vc-api-explain")
    api_predict.click(predict_voice_control, inputs, outputs, api_name="voice_control", preprocess=False, **heavy)
    api_explain.click(voice_control_explain, inputs + controls, c["explain_json"], api_name="voice_control_explain",
                      preprocess=False, **heavy)

    rows, captions = load_examples(VOICE_CONTROL_EXAMPLES)
    if rows:
        with examples_row:
            load_example = example_cards(rows, captions, inputs, photo=1, label="Examples: click one to run it",
                                         elem_id="vc-examples")
        # On a phone the answer is below the inputs: bring it into view (a no-op where it is in view).
        example_run = load_example.then(**dict(view, api_visibility="private"))
        example_run.then(**SHOW_ANSWER)
        requests.append(example_run)
    cancel_on([clear.click], requests)  # Clear during a prediction: its answer never paints beside empty inputs
