"""What the Voice control tab's events and API endpoints call: a prediction (with corruptions and switches), its
whole explanation for the page, the explanation as JSON, the report card, and the tab's help text."""

from __future__ import annotations

import html
import math
import tempfile
import uuid
from pathlib import Path

import gradio as gr

from mbm.checkpoint import fingerprint
from mbm.explain import explain_prediction
from mbm.figures import figure_svg
from mbm.paths import VOICE_CONTROL_CHECKPOINT
from mbm.preprocess import MAX_TEXT_CHARS
from mbm.report import export_report
from mbm.scenarios.voice_control.maps import with_occlusion_maps
from mbm.scenarios.voice_control.predictor import VoiceControlResult
from mbm.scenarios.voice_control.robustness import predict_corrupted
from mbm.scenarios.voice_control.spec import display_name
from mbm.ui import models
from mbm.ui.common import NEWEST, answer_html, image_file, modality_weights_chart, prune_folder, show_answer
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
# examples lose 0.001-0.016 per region; docs/voice_control.md, "Where the image map falls").
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
