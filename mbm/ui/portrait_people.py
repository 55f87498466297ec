"""The Portrait tab's second half: enrol a person, remove one (after a confirmation), the owner's reset, and
the People table with a face (or a generated avatar) for each person."""

from __future__ import annotations

import hashlib
import html
from functools import lru_cache

import gradio as gr
import numpy as np
from PIL import Image

from mbm.limits import MAX_PROFILE_CHARS
from mbm.paths import PORTRAIT_ASSETS
from mbm.scenarios.portrait.access import ADMIN_TOKEN_ENV
from mbm.scenarios.portrait.gallery import MAX_NAME, face_thumbnail, thumbnail_uri
from mbm.scenarios.portrait.predictor import MAX_ENROL_PHOTOS
from mbm.scenarios.portrait.spec import readable_name
from mbm.ui import models
from mbm.ui.common import echo_markdown, plain
from mbm.ui.portrait_handlers import enroll, list_people, remove_person, reset_gallery

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


def people_section(session, heavy: dict) -> tuple[dict, dict]:
    """The enrol form, the remove and reset controls and the People table, wired to the handlers; returns
    the events that fill the People list (on page load)."""
    c = _enrol_form_and_people()
    people_json = c["people_json"]
    show_people = {"fn": people_view, "inputs": people_json, "outputs": [c["people"], c["remove_name"]],
                   "api_visibility": "private"}
    refresh_people = {"fn": list_people, "inputs": session, "outputs": people_json, "api_visibility": "private"}
    c["refresh"].click(list_people, session, people_json, api_name="list_people").then(**show_people)
    statuses = [c["enrol_status"], c["remove_status"], c["reset_status"]]
    clear_statuses = {"fn": lambda: ("", "", ""), "inputs": None, "outputs": statuses, "api_visibility": "private",
                      "queue": False}  # an old "Enrolled Dana" must not stand beside a new error
    form = [c["name"], c["photos"], c["enrol_voice"], c["profile"]]
    c["enrol"].click(**clear_statuses).then(
        enroll, form + [c["admin_token"], session], [c["enrol_status"], c["enrol_json"], session],
        api_name="enroll", preprocess=False, **heavy).success(
        lambda: ("", None, None, ""), None, form, api_visibility="private",
        queue=False).then(**refresh_people).then(**show_people)  # the form is reset after a success
    confirm_row = c["confirm_row"]
    c["remove"].click(**clear_statuses).then(confirm_removal, c["remove_name"], [confirm_row, c["confirm_text"]],
                                             api_visibility="private", queue=False)
    c["cancel"].click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private", queue=False)
    c["confirm"].click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private", queue=False).then(
        remove_person, [c["remove_name"], c["admin_token"], session], [c["remove_status"], c["remove_json"], session],
        api_name="remove_person", preprocess=False).success(**refresh_people).then(**show_people)
    c["reset"].click(reset_gallery, c["admin_token"], [c["reset_status"], c["reset_json"]], api_name="reset_gallery",
                     preprocess=False).success(**refresh_people).then(**show_people)
    return refresh_people, show_people


def _enrol_form_and_people() -> dict:
    """The accordion: the enrol form beside remove and the owner's reset, then the People table, by name."""
    c = {}
    with gr.Accordion("Enrol a person · People in the gallery", open=True):
        with gr.Row(equal_height=False):
            with gr.Column():
                c["name"] = gr.Textbox(label="Name", max_lines=1, max_length=MAX_NAME,
                                       placeholder="e.g. Ada Lovelace", elem_id="pt-enrol-name")
                c["photos"] = gr.File(file_count="multiple", file_types=["image", ".pgm"], height=140,
                                      label=f"1–{MAX_ENROL_PHOTOS} photos of their face (one face each)",
                                      elem_id="pt-enrol-photos")
                c["enrol_voice"] = gr.Audio(sources=["microphone", "upload"], type="filepath",
                                            label="Voice clip (optional)", elem_id="pt-enrol-voice")
                c["profile"] = gr.Textbox(label="Profile (optional)", max_lines=2, max_length=MAX_PROFILE_CHARS,
                                          elem_id="pt-enrol-profile",
                                          placeholder="e.g. short, has curly hair, works in the library")
                c["enrol"] = gr.Button("Enrol", variant="primary", elem_id="pt-enrol")
                c["enrol_status"] = echo_markdown(elem_id="pt-enrol-status")
                c["enrol_json"] = gr.JSON(visible=False)
            with gr.Column():
                c.update(_remove_and_reset())
        # the whole width (beside the form its headers wrapped at 1280 px); in pixels, each header on one
        # line, so a narrower screen scrolls the table sideways (percentages broke "face" into "f a c e")
        c["people"] = gr.Dataframe(headers=PEOPLE_COLUMNS, interactive=False, max_height=420, wrap=True,
                                   datatype=["html", "str", "number", "bool", "str", "bool", "str"],
                                   column_widths=PEOPLE_WIDTHS, label="People", elem_id="pt-people")
        c["refresh"] = gr.Button("Refresh the list", elem_id="pt-refresh")
    return c


def _remove_and_reset() -> dict:
    """Remove a person (with its confirmation row), and the owner's admin token and reset, by name."""
    c = {}
    with gr.Row(equal_height=True):
        c["remove_name"] = gr.Dropdown(choices=[], allow_custom_value=True, label="Person to remove",
                                       scale=3, elem_id="pt-remove-name")
        c["remove"] = gr.Button("Remove…", variant="stop", scale=1, elem_id="pt-remove")
    with gr.Row(visible=False, elem_id="pt-remove-confirm") as c["confirm_row"]:
        c["confirm_text"] = echo_markdown()
        c["confirm"] = gr.Button("Yes, remove", variant="stop", elem_id="pt-remove-yes", min_width=100)
        c["cancel"] = gr.Button("Cancel", elem_id="pt-remove-cancel", min_width=100)
    c["remove_status"] = echo_markdown(elem_id="pt-remove-status")
    c["remove_json"] = gr.JSON(visible=False)
    c["people_json"] = gr.JSON(visible=False)
    with gr.Accordion("Owner: the shared gallery (admin token)", open=False):
        c["admin_token"] = gr.Textbox(label=f"Admin token (${ADMIN_TOKEN_ENV})", type="password",
                                      max_lines=1, elem_id="pt-admin-token",
                                      info="With the token, Enrol and Remove change the shared, saved "
                                           "gallery; without it they change only your session's people.")
        c["reset"] = gr.Button("Reset to the shipped gallery", variant="stop", elem_id="pt-reset")
        c["reset_status"] = gr.Markdown(elem_id="pt-reset-status")
        c["reset_json"] = gr.JSON(visible=False)
    return c
