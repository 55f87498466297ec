"""The Voice control tab: a spoken command + a photo + typed text -> a device action, explained."""

from __future__ import annotations

import html
import json
import math
import tempfile
import uuid
from pathlib import Path

import gradio as gr

from mbm.checkpoint import fingerprint
from mbm.explain import explain_prediction
from mbm.figures import figure_svg
from mbm.limits import HEAVY_CONCURRENCY_ID
from mbm.paths import VOICE_CONTROL_CHECKPOINT, VOICE_CONTROL_EXAMPLES
from mbm.preprocess import MAX_TEXT_CHARS
from mbm.report import export_report
from mbm.scenarios.voice_control.maps import with_occlusion_maps
from mbm.scenarios.voice_control.predictor import VoiceControlResult
from mbm.scenarios.voice_control.robustness import predict_corrupted
from mbm.scenarios.voice_control.spec import display_name
from mbm.ui import models
from mbm.ui.common import (
    NEWEST,
    REQUEST_ID_JS,
    answer_html,
    cancel_on,
    echo_markdown,
    example_cards,
    image_file,
    load_examples,
    modality_weights_chart,
    prune_folder,
    show_answer,
)
from mbm.ui.params import bool_value, file_value, guarded, number_value, text_value
from mbm.ui.voice_control_answer import headline_html, not_sure_below, voice_control_status
from mbm.viz import enlarged

REPORTS = Path(tempfile.gettempdir()) / "mbm_reports"  # report exports: a bounded folder (newest kept)
KEEP_REPORTS = 16
SHOW_ANSWER = show_answer("#vc-headline")  # on a phone the answer is below the inputs: bring it into view
NO_ANSWER_YET = answer_html("none", "No answer yet", "Click an example, or give a command and a photo and press Run.")


def _predict(audio, image, text, audio_noise=0.0, image_blur=0.0, image_occlusion=0.0, text_typos=0.0,
             use_audio=True, use_image=True, use_text=True) -> VoiceControlResult:
    """One prediction through ``predict_corrupted`` (levels 0 and every input on = the plain prediction).

    Library errors become a toast (and an AppError for API clients); warnings about an unusable
    input become a warning toast.
    """
    try:
        # Every API argument type-checked first, with a message naming it (ParameterError is a ValueError).
        args = {"audio": file_value(audio, "audio"), "image": file_value(image, "image"),
                    "text": text_value(text, "text", 10 * MAX_TEXT_CHARS),
                    "audio_noise": number_value(audio_noise, "audio_noise"),
                    "image_blur": number_value(image_blur, "image_blur"),
                    "image_occlusion": number_value(image_occlusion, "image_occlusion"),
                    "text_typos": number_value(text_typos, "text_typos"),
                    "use_audio": bool_value(use_audio, "use_audio"), "use_image": bool_value(use_image, "use_image"),
                    "use_text": bool_value(use_text, "use_text")}
        result = predict_corrupted(models.predictor("voice_control"), **args)
    except ValueError as e:  # InputError included: nothing usable, every input switched off, a level outside 0..1
        raise gr.Error(html.escape(str(e), quote=False), title="Nothing to predict from",
                       print_exception=False) from None
    for warning in result.warnings:  # an input was unusable but others were: say so, keep the answer
        gr.Warning(html.escape(warning, quote=False))
    return result


def _prediction_outputs(result: VoiceControlResult) -> tuple:
    """The four outputs of ``/voice_control``: top-5 label, weights chart, status line, JSON."""
    return ({display_name(a): p for a, p in result.top},
            modality_weights_chart(result.modality_weights, result.inputs.present),
            voice_control_status(result), result.to_json())


@guarded("Nothing to predict from")
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


def _explained(*args) -> VoiceControlResult:
    """``_predict(*args)`` with occlusion maps: the maps the page draws pass the deletion check (mbm.scenarios.voice_control.maps)."""
    return with_occlusion_maps(models.predictor("voice_control"), _predict(*args))


VIEW_OUTPUTS = 16
IMAGE_MAP_LABEL = "Image: what the answer needs, over the crop the model saw"
# Below this loss of p(answer) for every masked region, no one region decides the answer: the overlay,
# scaled to its maximum, would draw differences of a few thousandths as a bright spot (the shipped
# examples lose 0.001-0.016 per region; docs/explanations.md, "Where the image map falls").
FLAT_IMAGE_MAP = 0.02


def image_map_label(result: VoiceControlResult) -> str:
    """The image map's caption: the usual one, or, when masking any one region barely changes the answer, that."""
    lost = result.maps.get("image") if result.map_kind == "occlusion" else None
    if lost and max(lost) < FLAT_IMAGE_MAP:
        return f"Image: no region decides it (each < {FLAT_IMAGE_MAP:.0%})"  # the colours: tiny differences
    return IMAGE_MAP_LABEL


@guarded("Nothing to predict from")
def voice_control_view(audio=None, image=None, text=None, audio_noise=0.0, image_blur=0.0, image_occlusion=0.0,
                       text_typos=0.0, use_audio=True, use_image=True, use_text=True, request_id=None,
                       request: gr.Request = None):
    """The page's Run (and every robustness control): the prediction and its whole explanation; nothing
    (every output skipped) when the page has sent a newer request meanwhile (``request_id``, common.Newest)."""
    if not NEWEST.start("voice_control", request, request_id):
        return tuple(gr.skip() for _ in range(VIEW_OUTPUTS))
    result = _explained(audio, image, text, audio_noise, image_blur, image_occlusion, text_typos,
                        use_audio, use_image, use_text)
    if NEWEST.superseded("voice_control", request, request_id):
        return tuple(gr.skip() for _ in range(VIEW_OUTPUTS))
    ex = explain_prediction(result)
    view = ex["model_view"]
    return (*_prediction_outputs(result), headline_html(result, not_sure_below()), ex["flag_text"],
            figure_svg(ex["figure"], "the whole explanation in one figure"),
            gr.Image(value=image_file(ex["image_overlay"]), label=image_map_label(result)),
            ex["text_highlights"] or [("no text given (or switched off): no map", None)],
            "<p><small>no audio given (or switched off): no map</small></p>" if ex["audio_figure"] is None
            else figure_svg(ex["audio_figure"], "what the answer needs from the audio, over time"),
            figure_svg(ex["weights_figure"], "weights beside the confidence drop without each input"),
            _no_nan(ex["effects_table"]),
            image_file(None if view["image"] is None else enlarged(view["image"])),
            image_file(view["mel_image"]), _tokens(view["tokens"]), ex["json"])


@guarded("Nothing to predict from")
def rerun_voice_control(audio=None, image=None, text=None, audio_noise=0.0, image_blur=0.0, image_occlusion=0.0,
                        text_typos=0.0, use_audio=True, use_image=True, use_text=True, request_id=None,
                        request: gr.Request = None):
    """A slider or switch moved: predict again with the new settings (nothing given yet: change nothing)."""
    if audio is None and image is None and not (text if isinstance(text, str) else "x").strip():
        return tuple(gr.skip() for _ in range(VIEW_OUTPUTS))
    return voice_control_view(audio, image, text, audio_noise, image_blur, image_occlusion, text_typos, use_audio,
                              use_image, use_text, request_id, request)


@guarded("Nothing to predict from")
def voice_control_explain(audio=None, image=None, text=None, audio_noise=0.0, image_blur=0.0, image_occlusion=0.0,
                          text_typos=0.0, use_audio=True, use_image=True, use_text=True):
    """The explanation of a prediction as JSON, after optional corruptions (levels 0..1) and switches.

    Returns ``{"prediction": ..., "effects": {"weights", "confidence", "confidence_without", "drop",
    "disagree", "disagreeing_pairs", "margins"}, "maps": {"image_grid", "text", "audio_frames"},
    "created"}``; a map is null for an absent (or switched-off) input.
    """
    result = _explained(audio, image, text, audio_noise, image_blur, image_occlusion, text_typos,
                        use_audio, use_image, use_text)
    return explain_prediction(result)["json"]


@guarded("Nothing to predict from")
def voice_control_report(audio=None, image=None, text=None, audio_noise=0.0, image_blur=0.0, image_occlusion=0.0,
                         text_typos=0.0, use_audio=True, use_image=True, use_text=True):
    """The report card of a prediction (same inputs as /voice_control_explain): [PNG, HTML, JSON] files.

    The PNG is the aligned explanation figure, the HTML is self-contained (images inlined), the
    JSON holds the raw numbers (what /voice_control_explain returns).
    """
    result = _explained(audio, image, text, audio_noise, image_blur, image_occlusion, text_typos,
                        use_audio, use_image, use_text)
    folder = REPORTS / uuid.uuid4().hex
    # (checked by _explained above, so these conversions cannot fail here)
    settings = {name: number_value(value, name) for name, value in (
        ("audio_noise", audio_noise), ("image_blur", image_blur), ("image_occlusion", image_occlusion),
        ("text_typos", text_typos))}
    settings.update({name: bool_value(value, name) for name, value in (
        ("use_audio", use_audio), ("use_image", use_image), ("use_text", use_text))})
    paths = export_report(result, folder, settings=settings, model=fingerprint(VOICE_CONTROL_CHECKPOINT))
    prune_folder(REPORTS, keep=KEEP_REPORTS, protect=folder)  # Gradio serves its own copy; ours kept briefly
    return [str(paths[k]) for k in ("png", "html", "json")]


def voice_control_help() -> tuple[str, str]:
    """What the tab does, in one line and in full; device names, words and window come from the checkpoint."""
    devices = ", ".join(display_name(d) for d in models.predictor("voice_control").labels["device"])
    words = ", ".join(models.predictor("voice_control").labels["word"])
    seconds = f"{models.predictor('voice_control').cfg.audio.clip_seconds:g}"
    short = ("Say a command, show the device, and/or type a command, then **Run** — or click an example. "
             "The same spoken *up* brightens a lamp, raises blinds or turns the music up: the photo decides.")
    full = f"""
**Any subset works.** The chart shows how much each input counted: the weights sum to 1, and an
input you leave out gets exactly 0. Below the answer, **Explanation** shows where inside each input
the answer comes from and whether the weights agree with what removing each input measurably does;
the **robustness** controls switch inputs off or corrupt them and predict again at once. Below a
confidence chosen on held-out data the answer says **Not sure** and what is missing.

<small>Devices: {devices}. Spoken words: {words}. Only the loudest {seconds} s of a recording is
used.</small>
"""
    return short, full


def voice_control_tab() -> None:
    """The Voice control tab: inputs, prediction, robustness controls, explanation, export, API events."""
    short, full = voice_control_help()
    gr.Markdown(short, elem_id="vc-help")
    examples_row = gr.Row()  # the examples come first (filled below, once the outputs exist)
    with gr.Accordion("How to read this page", open=False):
        gr.Markdown(full)
    with gr.Row(equal_height=False):
        with gr.Column():
            audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Spoken command",
                             elem_id="vc-audio")
            image = gr.Image(sources=["upload", "webcam"], type="filepath", image_mode=None,
                             label="Photo of the device", height=260, elem_id="vc-image")
            text = gr.Textbox(label="Typed command (optional)", placeholder="e.g. dim the lamp, channel 5",
                              max_lines=1, elem_id="vc-text")
            with gr.Row():
                clear = gr.ClearButton(value="Clear", elem_id="vc-clear")
                run = gr.Button("Run", variant="primary", elem_id="vc-run")
        with gr.Column():
            # the answer at a glance (its look follows the confidence); the top 5 below without a big heading,
            # which looked as sure at 10 % as at 90 %
            headline = gr.HTML(NO_ANSWER_YET, elem_id="vc-headline")
            action = gr.Label(num_top_classes=5, label="Action (top 5)", show_heading=False, elem_id="vc-action")
            weights = gr.HTML(label="Per-modality attention weights", elem_id="vc-weights")
            status = echo_markdown(label="Status", elem_id="vc-status")
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

    with gr.Accordion("Explanation", open=True, elem_id="vc-explanation"), gr.Tabs(overflow_behavior="wrap"):
        with gr.Tab("Where the answer comes from", id="vc-where"):
            gr.Markdown("<small>Occlusion maps: how much the answer's probability drops when each part "
                        "of an input is masked. Checked on held-out data: masking the top 20 % costs "
                        "more than twice what a random 20 % costs (`map_deletion_ratio`). The attention "
                        "weights, which fail that check for text, are under **Numbers (JSON)** "
                        "(`token_weights`).</small>")
            with gr.Row(equal_height=False):
                heatmap = gr.Image(label=IMAGE_MAP_LABEL,
                                   interactive=False,
                                   format="png", height=300, scale=2, elem_id="vc-heatmap")
                with gr.Column(scale=5):
                    audio_plot = gr.HTML(label="Audio: what the answer needs, over time", show_label=True,
                                         container=True, elem_id="vc-audio-plot")
                    highlights = gr.HighlightedText(label="Text: what the answer needs per word (darker = more)",
                                                    show_legend=False, show_inline_category=False,
                                                    elem_id="vc-highlights")
        with gr.Tab("Weights vs measured effect", id="vc-effects-tab"), gr.Row(equal_height=False):
            effects_plot = gr.HTML(label="Weights beside the confidence drop without each input",
                                   scale=3, elem_id="vc-effects-plot")
            effects_table = gr.Dataframe(headers=["input", "weight", "p(action) without it", "drop"],
                                         interactive=False, scale=2, label="Measured effects",
                                         elem_id="vc-effects-table")
        with gr.Tab("Aligned figure", id="vc-figure-tab"):
            figure = gr.HTML(label="The whole explanation in one figure (as in the report card)",
                             show_label=True, container=True, elem_id="vc-figure")
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
    view_outputs = outputs + [headline, flag, figure, heatmap, highlights, audio_plot, effects_plot, effects_table,
                              seen_crop, seen_mel, seen_tokens, explain_json]
    clear.add(inputs + [o for o in view_outputs if o is not headline] + [report_files])
    clear.click(None, None, headline, js=f"() => {json.dumps(NO_ANSWER_YET)}", api_visibility="private", queue=False)
    heavy = {"concurrency_id": HEAVY_CONCURRENCY_ID}  # one limit shared by every event that decodes files
    # Every request the page paints is numbered (REQUEST_ID_JS) and runs at once ("multiple"): an older one
    # still running then paints nothing (common.Newest), and Clear cancels them (common.cancel_on).
    request_id = gr.Number(visible=False, elem_id="vc-request-id")
    view = dict(fn=voice_control_view, inputs=inputs + controls + [request_id], outputs=view_outputs,
                preprocess=False, api_visibility="undocumented", js=REQUEST_ID_JS, trigger_mode="multiple", **heavy)
    requests = [run.click(**view), text.submit(**view)]
    for request in requests:  # on a phone the answer is below the inputs
        request.then(**SHOW_ANSWER)
    rerun = dict(view, fn=rerun_voice_control, api_visibility="private")
    for slider in controls[:4]:
        requests.append(slider.release(**rerun))
    for switch in controls[4:]:
        requests.append(switch.change(**rerun))
    export.click(voice_control_report, inputs + controls, report_files, api_name="voice_control_report",
                 preprocess=False, **heavy)

    # API-only endpoints (the page reaches the same functions through the events above).
    with gr.Row(visible=False):
        api_predict = gr.Button("predict", elem_id="vc-api-predict")
        api_explain = gr.Button("explain", elem_id="vc-api-explain")
    api_predict.click(predict_voice_control, inputs, outputs, api_name="voice_control", preprocess=False, **heavy)
    api_explain.click(voice_control_explain, inputs + controls, explain_json, api_name="voice_control_explain",
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
