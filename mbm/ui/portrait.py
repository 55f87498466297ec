"""The Portrait recognition tab: face + voice + text profile -> who it is, or unknown; enrol and remove people."""

from __future__ import annotations

import hashlib
import html
import json
from functools import lru_cache

import gradio as gr
import numpy as np
from PIL import Image

from mbm.limits import HEAVY_CONCURRENCY_ID, MAX_PROFILE_CHARS, MAX_SESSION_PEOPLE
from mbm.paths import PORTRAIT_ASSETS, PORTRAIT_EXAMPLES
from mbm.preprocess import MAX_TEXT_CHARS
from mbm.scenarios.portrait.gallery import DEFAULT_DIR as GALLERY_DEFAULT_DIR
from mbm.scenarios.portrait.gallery import ENV_VAR as GALLERY_ENV_VAR
from mbm.scenarios.portrait.gallery import MAX_NAME, Gallery, face_thumbnail, thumbnail_uri
from mbm.scenarios.portrait.predictor import ADMIN_TOKEN_ENV, MAX_ENROL_PHOTOS, PortraitResult
from mbm.scenarios.portrait.spec import readable_name
from mbm.ui import models
from mbm.ui.common import (
    NEWEST,
    PORTRAIT_COLOURS,
    REQUEST_ID_JS,
    answer_html,
    cancel_on,
    echo_markdown,
    example_cards,
    image_file,
    load_examples,
    modality_weights_chart,
    plain,
    share,
    show_answer,
)
from mbm.ui.params import ParameterError, file_value, file_values, guarded, text_value

SHOW_ANSWER = show_answer("#pt-headline")
NO_ANSWER_YET = answer_html("none", "No answer yet",
                            "Click an example, or give a face, a voice or a profile and press Run.")
SESSION_TTL_S = 6 * 3600  # a visitor's own enrolments are forgotten this long after their last visit


def _session(value) -> Gallery:
    """The visitor's own gallery from the session state (a new empty one on the first call)."""
    return value if isinstance(value, Gallery) else Gallery()


def _token(value) -> str | None:
    """The admin-token argument: None when empty (a visitor), else the text to check."""
    token = text_value(value, "admin_token", 256)
    return token or None


def _sentence(text: str) -> str:
    """``text`` with a capital first letter."""
    return text[:1].upper() + text[1:]


TIE_BELOW = 0.3  # a best match holding less of the confidence than this is one of several that fit


def match_words(result: PortraitResult) -> str:
    """The answer in words: how sure, and who (a readable name with the dataset id), numbers left to the details."""
    if result.identity == "unknown":
        nearest = result.top5[0][0] if result.top5 else None
        return ("**Not a person in the gallery** (unknown): nobody is close enough"
                + (f" (the nearest is {plain(readable_name(nearest))})." if nearest else "."))
    who = plain(readable_name(result.identity))
    best = max(result.confidences.values(), default=0.0)
    if best < TIE_BELOW:
        return f"**Not sure**: several people fit about equally; the closest is {who}. Add a face photo or a voice."
    margin = result.score - result.threshold
    words = "Very likely" if margin > 1.0 else "Likely" if margin > 0.3 else "Probably"
    return f"**{words} {who}**"


def portrait_answer(result: PortraitResult) -> tuple[str, str, str]:
    """The answer box's kind and words (mbm.ui.common.answer_html): "sure" only for Likely and Very likely,
    "unsure" for a tie or a match just over the threshold, "none" for nobody in the gallery."""
    numbers = f"score {result.score:.2f}, threshold {result.threshold:.2f}"
    if result.identity == "unknown":
        nearest = result.top5[0][0] if result.top5 else None
        return ("none", "Not a person in the gallery",
                "Nobody is close enough" + (f"; the nearest is {readable_name(nearest)}" if nearest else "")
                + f" ({numbers}: a match needs the score above the threshold).")
    who = readable_name(result.identity)
    if max(result.confidences.values(), default=0.0) < TIE_BELOW:
        return ("unsure", f"Not sure · the closest is {who}",
                "Several people fit about equally; add a face photo or a voice.")
    margin = result.score - result.threshold
    if margin > 0.3:
        return "sure", who, f"{'Very likely' if margin > 1.0 else 'Likely'} ({numbers})"
    return "unsure", f"Not sure · probably {who}", f"Just over the threshold ({numbers})."


def portrait_status(result: PortraitResult, present: list[str]) -> str:
    """The status: the answer in words, then the numbers, the weights, notes and the composed note."""
    lines = [match_words(result)]
    best = result.top5[0] if result.top5 else None
    if best:
        lines.append(f"<small>score {best[1]:.2f}, threshold {result.threshold:.2f} (above it: a match)</small>")
    lines.append("attention: " + " · ".join(
        f"{m} {share(w)}" if m in present else f"{m} 0 (absent)" for m, w in result.modality_weights.items()))
    lines += [f"⚠️ {plain(n)}" for n in result.notes]
    lines.append(f"<small>{plain(_sentence(models.predictor('portrait').note))}.</small>")
    return "  \n".join(lines)


@guarded("Cannot recognise")
def predict_portrait(face=None, voice=None, text=None, session=None):
    """Identify a person from a face photo, a voice clip and/or a short text profile.

    Any subset works. Returns the identity (top 5 with scores, or "unknown"), a chart of the
    per-modality weights (face/voice/profile, sum to 1, absent = 0), the face crop the model used,
    a status line, and the full result as JSON (identity, score, threshold, top5, modality_weights, notes).
    The people searched are the shared gallery plus the ones enrolled in this session.
    """
    return _portrait_outputs(*_recognise(face, voice, text, session))


def _recognise(face, voice, text, session) -> tuple[PortraitResult, list[str]]:
    """The prediction and the inputs given (arguments checked; notes become warning toasts)."""
    face, voice = file_value(face, "face"), file_value(voice, "voice")
    text = text_value(text, "text", MAX_TEXT_CHARS)
    result = models.predictor("portrait").predict(face=face, voice=voice, text=text, session=_session(session))
    for note in result.notes:  # e.g. several faces: the largest was used
        gr.Warning(html.escape(note, quote=False))
    return result, [m for m, given in (("face", face), ("voice", voice), ("profile", text)) if given is not None]


def _portrait_outputs(result: PortraitResult, present: list[str]) -> tuple:
    """The five outputs of ``/portrait``: top-5 label (or "unknown"), weights chart, face crop, status, JSON."""
    label = ({readable_name(n): c for n, c in result.confidences.items()} if result.identity != "unknown"
             else "unknown")
    return (label, modality_weights_chart(result.modality_weights, present, PORTRAIT_COLOURS),
            image_file(result.face_crop), portrait_status(result, present), result.to_json())


@guarded("Cannot recognise")
def portrait_view(face=None, voice=None, text=None, session=None, request_id=None, request: gr.Request = None):
    """The page's Run: ``/portrait``'s outputs and the answer box; the label's big heading only for
    "unknown" (for a name the box says how sure, and a bold heading looked sure at any score). Nothing
    (every output skipped) when the page has sent a newer request meanwhile (``request_id``, common.Newest)."""
    if not NEWEST.start("portrait", request, request_id):
        return tuple(gr.skip() for _ in range(6))
    result, present = _recognise(face, voice, text, session)
    if NEWEST.superseded("portrait", request, request_id):
        return tuple(gr.skip() for _ in range(6))
    label, *rest = _portrait_outputs(result, present)
    return (gr.Label(value=label, show_heading=result.identity == "unknown"), *rest,
            answer_html(*portrait_answer(result)))


@guarded("Cannot enrol")
def enroll(name=None, photos=None, voice=None, profile=None, admin_token=None, session=None):
    """Enrol a person without retraining: a name, 1-5 photos of their face, optionally a voice clip and profile.

    Without ``admin_token`` the person is added to this visitor's session only (nobody else sees them;
    at most MBM_MAX_SESSION_PEOPLE); with the owner's token ($MBM_ADMIN_TOKEN) to the shared, saved
    gallery. Returns a status line and JSON ``{"name", "photos", "voice", "profile", "where"}``.
    """
    if name is not None and not isinstance(name, str):
        raise ParameterError(f"name: expected text, got a {type(name).__name__}")
    session = _session(session)
    info = models.predictor("portrait").enrol(name or "", file_values(photos, "photos", MAX_ENROL_PHOTOS), voice=file_value(voice, "voice"),
                                   profile=text_value(profile, "profile", MAX_PROFILE_CHARS),
                                   session=session, admin_token=_token(admin_token))
    extras = [x for x, given in (("a voice", info["voice"]), ("a profile", info["profile"])) if given]
    where = ("in the shared gallery (saved)" if info["where"] == "shared"
             else "for this session only (only you see them)")
    status = (f"Enrolled **{plain(info['name'])}** from {info['photos']} photo{'s' * (info['photos'] > 1)}"
              + (" and " + " and ".join(extras) if extras else "") + f" {where}; recognised from now on.")
    return status, info, session


@guarded("Cannot remove")
def remove_person(name=None, admin_token=None, session=None):
    """Remove a person by name: your own session's people freely; shared or shipped people only with the
    owner's admin token. Returns a status line and JSON ``{"removed": name, "people": n}``."""
    if name is not None and not isinstance(name, str):
        raise ParameterError(f"name: expected text, got a {type(name).__name__}")
    if not (name or "").strip():
        raise ParameterError("choose or type the name of the person to remove")
    session = _session(session)
    removed = models.predictor("portrait").remove(name, session=session, admin_token=_token(admin_token))
    return (f"Removed **{plain(removed)}**.", {"removed": removed,
                                               "people": len(models.predictor("portrait").list_people(session))}, session)


@guarded("Cannot reset")
def reset_gallery(admin_token=None):
    """The owner's "reset to the shipped gallery" (needs the admin token). Returns a status line and JSON."""
    n = models.predictor("portrait").reset_shared(_token(admin_token))
    return f"The shared gallery is the shipped one again ({n} people).", {"people": n}


@guarded("Cannot list")
def list_people(session=None):
    """Everyone you can be recognised against: ``[{"name", "photos", "voice", "profile", "composed", "origin"}]``
    (origin: shipped, shared, or yours for this session's own enrolments)."""
    return models.predictor("portrait").list_people(_session(session))


PEOPLE_COLUMNS = ["face", "name", "photos", "voice", "profile", "composed", "origin"]
PEOPLE_WIDTHS = ["60px", "130px", "80px", "70px", "480px", "100px", "90px"]
AVATAR_COLOURS = ("#1d6a96", "#7b3fa0", "#b03a2e", "#2e7d32", "#8a5a00", "#3f51b5", "#ad1457", "#00695c")  # white
# text on each has a contrast of 5 or more
FACE_PX = 40  # the face column's pictures, on screen


def avatar(name: str) -> str:
    """A generated picture for a person without a photo: their initial in a circle coloured by the name."""
    shown = readable_name(name)
    initial = next((c for c in shown if c.isalnum()), "?").upper()
    colour = AVATAR_COLOURS[int(hashlib.md5(name.encode()).hexdigest(), 16) % len(AVATAR_COLOURS)]
    return (f'<svg width="{FACE_PX}" height="{FACE_PX}" viewBox="0 0 40 40" role="img" '
            f'aria-label="{html.escape(shown)} (no photo: initial)"><circle cx="20" cy="20" r="20" fill="{colour}"/>'
            f'<text x="20" y="26.5" text-anchor="middle" font-size="18" font-weight="bold" fill="#fff" '
            f'font-family="sans-serif">{html.escape(initial)}</text></svg>')


@lru_cache(maxsize=64)
def asset_thumbnail(name: str) -> str | None:
    """A shipped person's face from the committed assets (``faces/orl/<id>/``, ``faces/yale/<id>.*``) as a
    thumbnail URI, or None: the dataset photos are not in the repository, only these few credited ones."""
    photos = sorted((PORTRAIT_ASSETS / "faces" / "orl" / name).glob("*.pgm")) if name.isalnum() else []
    photos += sorted((PORTRAIT_ASSETS / "faces" / "yale").glob(f"{name}.*.png")) if name.isalnum() else []
    for photo in photos:
        try:
            with Image.open(photo) as img:
                chip, _, _ = models.predictor("portrait").faces.chip(np.asarray(img.convert("RGB")))  # the aligned face
            return thumbnail_uri(face_thumbnail(chip))
        except (OSError, ValueError):
            continue
    return None


def face_cell(person: dict) -> str:
    """The People list's picture of a person: the enrolment face, a committed photo, or an avatar."""
    uri = person.get("thumbnail")
    uri = uri if isinstance(uri, str) and uri.startswith("data:image/jpeg;base64,") else None
    uri = uri or (asset_thumbnail(person["name"]) if person.get("origin") == "shipped" else None)
    if uri is None:
        return avatar(person["name"])
    return (f'<img src="{html.escape(uri)}" width="{FACE_PX}" height="{FACE_PX}" '
            f'alt="{html.escape(readable_name(person["name"]))}" style="border-radius:50%;object-fit:cover">')


def people_view(people):
    """The People table (a face, readable names, newest first) and the Remove choices from ``list_people``'s
    JSON."""
    people = people if isinstance(people, list) else []
    order = ("yours", "shared", "shipped")  # your own enrolments at the top, not at the bottom
    people = sorted(people, key=lambda p: next((k for k, o in enumerate(order)
                                                if str(p.get("origin", "")).startswith(o)), len(order)))
    cell = {"face": face_cell, "name": lambda p: readable_name(p["name"])}
    rows = [[cell[c](p) if c in cell else p.get(c) for c in PEOPLE_COLUMNS] for p in people]
    return rows, gr.Dropdown(choices=[(readable_name(p["name"]), p["name"]) for p in people], value=None)


def confirm_removal(name=None):
    """The first click on Remove: ask before removing (a confirm button appears)."""
    if not isinstance(name, str) or not name.strip():
        raise gr.Error("choose or type the name of the person to remove", title="Cannot remove",
                       print_exception=False)
    return (gr.Row(visible=True),
            f"Remove **{plain(readable_name(name.strip()))}**? Their enrolment is deleted; this cannot be undone.")


def portrait_help() -> str:
    """What the tab does, with the gallery folder and the composed-identities note."""
    return f"""
Give a face photo (upload or webcam), a voice clip (record or upload) and/or a short text profile
(*tall, wears glasses, works in the lab*), then press **Run**: the person's name among the enrolled
people with the top 5, or **unknown** when nobody is close enough. The chart shows how much each
input counted (sum to 1, an input you leave out gets exactly 0); beside it, the face the model cropped.
**Enrol** adds a person from 1–{MAX_ENROL_PHOTOS} photos, no retraining; they are recognised at once.

> **Note:** {html.escape(_sentence(models.predictor("portrait").note))}.

<small>The people you enrol stay in **your browser session** only (at most {MAX_SESSION_PEOPLE}; nobody else
sees them, and they are gone when the session ends). The shared gallery starts as the shipped 42 people
(ORL s1–s35 and Yale subjects, minus a few held out as strangers); only the owner changes it, with the admin
token (`{ADMIN_TOKEN_ENV}`), and it is saved in `${GALLERY_ENV_VAR}` (default `{GALLERY_DEFAULT_DIR}`).
See docs/reliability.md for what the app refuses and why.</small>
"""


def portrait_tab():
    """The Portrait recognition tab; returns the event that fills the People list on page load."""
    gr.Markdown(portrait_help(), elem_id="pt-help")
    examples_row = gr.Row()  # the examples come first (filled below, once the outputs exist)
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
        with gr.Column():
            headline = gr.HTML(NO_ANSWER_YET, elem_id="pt-headline")  # the answer at a glance
            identity = gr.Label(num_top_classes=5, label="Identity (top 5, or unknown)", show_heading=False,
                                elem_id="pt-identity")
            # the chart gets the column's width: beside the crop it was squeezed to ~7 px text
            weights = gr.HTML(label="Per-modality attention weights", elem_id="pt-weights")
            crop = gr.Image(label="Face used", interactive=False, height=170, elem_id="pt-crop")
            status = echo_markdown(label="Status", elem_id="pt-status")
            with gr.Accordion("Full result (what the API returns)", open=False):
                details = gr.JSON(label="Result", show_label=False, elem_id="pt-json")
    session = gr.State(None, time_to_live=SESSION_TTL_S)  # this visitor's own enrolments (a Gallery)
    heavy = {"concurrency_id": HEAVY_CONCURRENCY_ID}  # one limit shared by every event that decodes files
    inputs, outputs = [face, voice, text], [identity, weights, crop, status, details]
    clear.add(inputs + outputs)
    clear.click(None, None, headline, js=f"() => {json.dumps(NO_ANSWER_YET)}", api_visibility="private", queue=False)
    # numbered requests, run at once: an older one still running paints nothing (common.Newest)
    request_id = gr.Number(visible=False, elem_id="pt-request-id")
    view = dict(fn=portrait_view, inputs=inputs + [session, request_id], outputs=outputs + [headline],
                preprocess=False, api_visibility="private", js=REQUEST_ID_JS, trigger_mode="multiple", **heavy)
    requests = [run.click(**view), text.submit(**view)]
    for request in requests:  # on a phone the answer is below the inputs
        request.then(**SHOW_ANSWER)
    with gr.Row(visible=False):  # the API endpoint (the page reaches the same prediction through the events above)
        api_run = gr.Button("portrait", elem_id="pt-api-run")
    api_run.click(predict_portrait, inputs + [session], outputs, api_name="portrait", preprocess=False, **heavy)
    rows, captions = load_examples(PORTRAIT_EXAMPLES, file_keys=("face", "voice"))
    if rows:
        with examples_row:
            load_example = example_cards(rows, captions, inputs, photo=0, label="Examples: click one to run it",
                                         elem_id="pt-examples")
        example_run = load_example.then(**view)
        example_run.then(**SHOW_ANSWER)  # on a phone the answer is below the inputs
        requests.append(example_run)
    cancel_on([clear.click], requests)  # Clear during a prediction: its answer never paints beside empty inputs

    with gr.Accordion("Enrol a person · People in the gallery", open=True):
        with gr.Row(equal_height=False):
            with gr.Column():
                name = gr.Textbox(label="Name", max_lines=1, max_length=MAX_NAME, placeholder="e.g. Ada Lovelace",
                                  elem_id="pt-enrol-name")
                photos = gr.File(file_count="multiple", file_types=["image", ".pgm"], height=140,
                                 label=f"1–{MAX_ENROL_PHOTOS} photos of their face (one face each)",
                                 elem_id="pt-enrol-photos")
                enrol_voice = gr.Audio(sources=["microphone", "upload"], type="filepath",
                                       label="Voice clip (optional)", elem_id="pt-enrol-voice")
                profile = gr.Textbox(label="Profile (optional)", max_lines=2, max_length=MAX_PROFILE_CHARS,
                                     elem_id="pt-enrol-profile",
                                     placeholder="e.g. short, has curly hair, works in the library")
                enrol = gr.Button("Enrol", variant="primary", elem_id="pt-enrol")
                enrol_status = echo_markdown(elem_id="pt-enrol-status")
                enrol_json = gr.JSON(visible=False)
            with gr.Column():
                with gr.Row(equal_height=True):
                    remove_name = gr.Dropdown(choices=[], allow_custom_value=True, label="Person to remove",
                                              scale=3, elem_id="pt-remove-name")
                    remove = gr.Button("Remove…", variant="stop", scale=1, elem_id="pt-remove")
                with gr.Row(visible=False, elem_id="pt-remove-confirm") as confirm_row:
                    confirm_text = echo_markdown()
                    confirm = gr.Button("Yes, remove", variant="stop", elem_id="pt-remove-yes", min_width=100)
                    cancel = gr.Button("Cancel", elem_id="pt-remove-cancel", min_width=100)
                remove_status = echo_markdown(elem_id="pt-remove-status")
                remove_json = gr.JSON(visible=False)
                people_json = gr.JSON(visible=False)
                with gr.Accordion("Owner: the shared gallery (admin token)", open=False):
                    admin_token = gr.Textbox(label=f"Admin token (${ADMIN_TOKEN_ENV})", type="password",
                                             max_lines=1, elem_id="pt-admin-token",
                                             info="With the token, Enrol and Remove change the shared, saved "
                                                  "gallery; without it they change only your session's people.")
                    reset = gr.Button("Reset to the shipped gallery", variant="stop", elem_id="pt-reset")
                    reset_status = gr.Markdown(elem_id="pt-reset-status")
                    reset_json = gr.JSON(visible=False)
        # the whole width (beside the form its headers wrapped at 1280 px); in pixels, each header on one
        # line, so a narrower screen scrolls the table sideways (percentages broke "face" into "f a c e")
        people = gr.Dataframe(headers=PEOPLE_COLUMNS, interactive=False, max_height=420, wrap=True,
                              datatype=["html", "str", "number", "bool", "str", "bool", "str"],
                              column_widths=PEOPLE_WIDTHS, label="People", elem_id="pt-people")
        refresh = gr.Button("Refresh the list", elem_id="pt-refresh")

    show_people = {"fn": people_view, "inputs": people_json, "outputs": [people, remove_name],
                       "api_visibility": "private"}
    refresh_people = {"fn": list_people, "inputs": session, "outputs": people_json, "api_visibility": "private"}
    refresh.click(list_people, session, people_json, api_name="list_people").then(**show_people)
    statuses = [enrol_status, remove_status, reset_status]
    clear_statuses = {"fn": lambda: ("", "", ""), "inputs": None, "outputs": statuses, "api_visibility": "private",
                          "queue": False}  # an old "Enrolled Dana" must not stand beside a new error
    enrol.click(**clear_statuses).then(
        enroll, [name, photos, enrol_voice, profile, admin_token, session], [enrol_status, enrol_json, session],
        api_name="enroll", preprocess=False, **heavy).success(
        lambda: ("", None, None, ""), None, [name, photos, enrol_voice, profile], api_visibility="private",
        queue=False).then(**refresh_people).then(**show_people)  # the form is reset after a success
    remove.click(**clear_statuses).then(confirm_removal, remove_name, [confirm_row, confirm_text],
                                        api_visibility="private", queue=False)
    cancel.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private", queue=False)
    confirm.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private", queue=False).then(
        remove_person, [remove_name, admin_token, session], [remove_status, remove_json, session],
        api_name="remove_person", preprocess=False).success(**refresh_people).then(**show_people)
    reset.click(reset_gallery, admin_token, [reset_status, reset_json], api_name="reset_gallery",
                preprocess=False).success(**refresh_people).then(**show_people)
    return refresh_people, show_people
