"""The Portrait recognition tab: face + voice + text profile -> who it is, or unknown; enrol and remove people."""

from __future__ import annotations

import html

import gradio as gr

from mbm.gallery import DEFAULT_DIR as GALLERY_DEFAULT_DIR
from mbm.gallery import ENV_VAR as GALLERY_ENV_VAR
from mbm.paths import PORTRAIT_EXAMPLES
from mbm.portrait_inference import MAX_ENROL_PHOTOS, PortraitResult
from mbm.ui import models
from mbm.ui.common import (PORTRAIT_COLOURS, file_value, file_values, image_file, load_examples,
                           modality_weights_chart, plain, share, user_error)


def _sentence(text: str) -> str:
    """``text`` with a capital first letter."""
    return text[:1].upper() + text[1:]


def portrait_status(result: PortraitResult, present: list[str]) -> str:
    """The status line: who (or unknown), the match score, the weights, notes and the composed note."""
    if result.identity == "unknown":
        nearest = result.top5[0] if result.top5 else None
        lines = ["**unknown**: nobody in the gallery is close enough"
                 + (f" (nearest {plain(nearest[0])}, score {nearest[1]:.2f} < threshold {result.threshold:.2f})"
                    if nearest else "")]
    else:
        lines = [f"**{plain(result.identity)}** (score {result.score:.2f}, threshold {result.threshold:.2f})"]
    lines.append("attention: " + " · ".join(
        f"{m} {share(w)}" if m in present else f"{m} 0 (absent)" for m, w in result.modality_weights.items()))
    lines += [f"⚠️ {plain(n)}" for n in result.notes]
    lines.append(f"<small>{plain(_sentence(models.portrait().note))}.</small>")
    return "  \n".join(lines)


def predict_portrait(face=None, voice=None, text=None):
    """Identify a person from a face photo, a voice clip and/or a short text profile.

    Any subset works. Returns the identity (top 5 with scores, or "unknown"), a chart of the
    per-modality weights (face/voice/profile, sum to 1, absent = 0), the face crop the model used,
    a status line, and the full result as JSON (identity, score, threshold, top5, modality_weights, notes).
    """
    face, voice, text = file_value(face), file_value(voice), (text or "").strip() or None
    try:
        result = models.portrait().predict(face=face, voice=voice, text=text)
    except ValueError as e:  # InputError included: no input, no face found, silent clip, ...
        raise user_error(e, "Cannot recognise") from None
    for note in result.notes:  # e.g. several faces: the largest was used
        gr.Warning(html.escape(note, quote=False))
    present = [m for m, given in (("face", face), ("voice", voice), ("profile", text)) if given is not None]
    label = dict(result.confidences) if result.identity != "unknown" else "unknown"
    return (label, modality_weights_chart(result.modality_weights, present, PORTRAIT_COLOURS),
            image_file(result.face_crop), portrait_status(result, present), result.to_json())


def enroll(name=None, photos=None, voice=None, profile=None):
    """Enrol a person without retraining: a name, 1-5 photos of their face, optionally a voice clip and profile.

    Returns a status line and JSON ``{"name", "photos", "voice", "profile"}``; the person is
    recognised from the next request on, and the gallery is saved.
    """
    try:
        info = models.portrait().enrol(name if isinstance(name, str) else "", file_values(photos),
                                       voice=file_value(voice), profile=(profile or "").strip() or None)
    except ValueError as e:  # unsafe/empty/existing name, 0 or > 5 photos, no face or several faces
        raise user_error(e, "Cannot enrol") from None
    extras = [x for x, given in (("a voice", info["voice"]), ("a profile", info["profile"])) if given]
    status = (f"Enrolled **{plain(info['name'])}** from {info['photos']} photo{'s' * (info['photos'] > 1)}"
              + (" and " + " and ".join(extras) if extras else "") + "; recognised from now on.")
    return status, info


def remove_person(name=None):
    """Remove an enrolled person by name. Returns a status line and JSON ``{"removed": name, "people": n}``."""
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise gr.Error("choose or type the name of the person to remove", title="Cannot remove",
                       print_exception=False)
    try:
        models.portrait().remove(name)
    except ValueError as e:
        raise user_error(e, "Cannot remove") from None
    return f"Removed **{plain(name)}**.", {"removed": name, "people": len(models.portrait().list_people())}


def list_people():
    """Everyone in the gallery: ``[{"name", "photos", "voice", "profile", "composed"}, ...]``."""
    return models.portrait().list_people()


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

> **Note:** {html.escape(_sentence(models.portrait().note))}.

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
