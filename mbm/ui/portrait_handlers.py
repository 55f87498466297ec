"""What the Portrait tab's events and API endpoints call: recognise (with the answer box and the status line),
enrol, remove, reset the shared gallery, list the people; and the tab's help text."""

from __future__ import annotations

import html

import gradio as gr

from mbm.limits import MAX_PROFILE_CHARS, MAX_SESSION_PEOPLE
from mbm.preprocess import MAX_TEXT_CHARS
from mbm.scenarios.portrait.access import ADMIN_TOKEN_ENV
from mbm.scenarios.portrait.gallery import DEFAULT_DIR as GALLERY_DEFAULT_DIR
from mbm.scenarios.portrait.gallery import ENV_VAR as GALLERY_ENV_VAR
from mbm.scenarios.portrait.gallery import Gallery
from mbm.scenarios.portrait.predictor import MAX_ENROL_PHOTOS, PortraitResult
from mbm.scenarios.portrait.spec import readable_name
from mbm.ui import models
from mbm.ui.common import (
    NEWEST,
    PORTRAIT_COLOURS,
    answer_html,
    image_file,
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
