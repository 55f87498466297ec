"""The Portrait recognition tab as a user's program sees it: ``python app.py`` called with gradio_client.

The server comes from the ``app_url`` fixture (tests/conftest.py) with ``MBM_GALLERY_DIR`` set to a
temporary folder, so enrolment never touches the user's gallery. The inputs are the committed
examples in ``assets/portrait`` (see docs/portrait.md, "Measured") and the shipped checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets" / "portrait"
CLEAR_S1 = ASSETS / "faces/orl/s1/6.pgm"
BLURRED_S1 = ASSETS / "examples/s1_blurred.png"
VOICE_S1 = ASSETS / "fsdd/recordings/7_george_20.wav"  # FSDD george: the voice composed into s1
S18 = [ASSETS / f"faces/orl/s18/{k}.pgm" for k in (1, 2, 3, 4)]  # a held-out person: a stranger
MODALITIES = {"face", "voice", "profile"}


def make_client(url: str, tmp_path_factory) -> Client:
    return Client(url, verbose=False, analytics_enabled=False,
                  download_files=str(tmp_path_factory.mktemp("client_downloads")))


@pytest.fixture(scope="module")
def client(app_url, tmp_path_factory):
    return make_client(app_url, tmp_path_factory)


def _file(path):
    return handle_file(str(path)) if path else None


def recognise(client, face=None, voice=None, text="") -> dict:
    """One /portrait call; checks the outputs agree with each other and returns the JSON result."""
    outputs = client.predict(face=_file(face), voice=_file(voice), text=text, api_name="/portrait")
    assert len(outputs) == 5, outputs
    label, plot, crop, status, result = outputs
    assert isinstance(result, dict), result
    from mbm.scenarios.portrait.spec import readable_name

    assert label["label"] == readable_name(result["identity"]), (label, result)  # "Alex (s1)"; the JSON keeps "s1"
    if result["identity"] != "unknown":  # the top 5 with scores; "unknown" alone otherwise
        assert [c["label"] for c in label["confidences"]] == [readable_name(t["name"]) for t in result["top5"]]
    assert plot.startswith("<svg") and isinstance(status, str) and result["identity"] in status
    assert "identities are composed" in status.lower()
    assert (crop is not None) == (face is not None), crop
    weights = result["modality_weights"]
    assert set(weights) == MODALITIES
    assert math.isclose(sum(weights.values()), 1.0, abs_tol=2e-3), weights
    present = {m for m, x in (("face", face), ("voice", voice), ("profile", text.strip())) if x}
    for m in MODALITIES - present:
        assert weights[m] == 0.0, f"absent {m} must weigh exactly 0: {weights}"
    return result


def enroll(client, name, photos, voice=None, profile=""):
    return client.predict(name=name, photos=[_file(p) for p in photos], voice=_file(voice), profile=profile,
                          api_name="/enroll")


def people(client) -> dict[str, dict]:
    listed = client.predict(api_name="/list_people")
    assert isinstance(listed, list), listed
    return {p["name"]: p for p in listed}


def test_api_lists_the_portrait_events_with_named_parameters(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    params = {name: [p["parameter_name"] for p in endpoints[name]["parameters"]]
              for name in ("/portrait", "/enroll", "/remove_person", "/list_people")}
    assert params == {"/portrait": ["face", "voice", "text"],
                      "/enroll": ["name", "photos", "voice", "profile", "admin_token"],
                      "/remove_person": ["name", "admin_token"], "/list_people": []}


def test_clear_face_is_s1_and_only_the_face_counts(client):
    result = recognise(client, face=CLEAR_S1)
    assert result["identity"] == "s1", result
    assert result["modality_weights"]["face"] == pytest.approx(1.0, abs=2e-3)
    assert result["top5"][0]["name"] == "s1" and len(result["top5"]) == 5


def test_blurred_face_with_the_voice_is_s1(client):
    result = recognise(client, face=BLURRED_S1, voice=VOICE_S1)
    assert result["identity"] == "s1", result
    w = result["modality_weights"]
    assert w["face"] > 0 and w["voice"] > 0 and w["profile"] == 0.0, w


def test_profile_only(client):
    result = recognise(client, text="short, has long hair, works at the clinic")
    assert result["modality_weights"]["profile"] == pytest.approx(1.0, abs=2e-3)


def test_stranger_is_unknown(client):
    assert recognise(client, face=S18[3])["identity"] == "unknown"


def test_enrol_recognise_restart_remove(client, app_url, app_gallery_dir, launch_app, tmp_path_factory):
    """A visitor's enrolment lives in their session only; the owner's (admin token) is saved."""
    assert "s18" not in people(client)
    status, info = enroll(client, "s18", S18[:3])
    assert info == {"name": "s18", "photos": 3, "voice": False, "profile": False, "where": "session"}, info
    assert "Enrolled" in status and "s18" in status and "this session" in status
    assert recognise(client, face=S18[3])["identity"] == "s18"
    assert people(client)["s18"]["photos"] == 3
    stranger = make_client(app_url, tmp_path_factory)  # another visitor does not see s18
    assert "s18" not in people(stranger) and recognise(stranger, face=S18[3])["identity"] == "unknown"
    with pytest.raises(AppError, match="nobody called 's18' is enrolled"):
        stranger.predict(name="s18", api_name="/remove_person")
    assert not (app_gallery_dir / "gallery.json").exists()  # nothing shared was written
    status, removed = client.predict(name="s18", api_name="/remove_person")
    assert removed["removed"] == "s18" and "s18" not in people(client)

    # The owner (admin token) enrols into the shared gallery; a restarted server knows s18 ...
    token = "owner-secret"
    folder = tmp_path_factory.mktemp("owner_gallery")
    with launch_app(tmp_path_factory.mktemp("app_owner"), MBM_GALLERY_DIR=str(folder), MBM_ADMIN_TOKEN=token) as url:
        owner = make_client(url, tmp_path_factory)
        with pytest.raises(AppError, match="admin token is wrong"):
            owner.predict(name="s18", photos=[handle_file(str(p)) for p in S18[:3]], admin_token="guess",
                          api_name="/enroll")
        status, info = owner.predict(name="s18", photos=[handle_file(str(p)) for p in S18[:3]], admin_token=token,
                                     api_name="/enroll")
        assert info["where"] == "shared" and (folder / "gallery.json").is_file()
    with launch_app(tmp_path_factory.mktemp("app_restart"), MBM_GALLERY_DIR=str(folder),
                    MBM_ADMIN_TOKEN=token) as url:
        restarted = make_client(url, tmp_path_factory)
        assert "s18" in people(restarted)
        assert recognise(restarted, face=S18[3])["identity"] == "s18"
        # ... a visitor cannot remove them, the owner can.
        with pytest.raises(AppError, match="only the owner"):
            restarted.predict(name="s18", api_name="/remove_person")
        status, removed = restarted.predict(name="s18", admin_token=token, api_name="/remove_person")
        assert removed["removed"] == "s18" and "s18" in status
        assert "s18" not in people(restarted)
        assert recognise(restarted, face=S18[3])["identity"] == "unknown"
        with pytest.raises(AppError, match="nobody called 's18' is enrolled"):
            restarted.predict(name="s18", admin_token=token, api_name="/remove_person")


def test_bad_inputs_are_clear_errors_and_the_server_keeps_answering(client, tmp_path, generated_inputs, two_faces_png):
    with pytest.raises(AppError, match="give a face photo, a voice clip or a profile text"):
        recognise(client)
    with pytest.raises(AppError, match="no face found"):
        recognise(client, face=generated_inputs["image"])  # random texture: no face in it
    with pytest.raises(AppError, match="not an image"):
        recognise(client, face=generated_inputs["not_image"])
    for name, message in [("../x", "no slashes"), ("", "the name is empty"), ("   ", "the name is empty"),
                          ("a/b", "no slashes"), ("unknown", "reserved"), ("s1", "'s1' is already enrolled")]:
        with pytest.raises(AppError, match=message):
            enroll(client, name, S18[:1])
    with pytest.raises(AppError, match="1 to 5 photos"):
        enroll(client, "Nobody Yet", [])
    with pytest.raises(AppError, match="photos: give at most 5 files"):
        enroll(client, "Nobody Yet", S18 + S18[:2])
    with pytest.raises(AppError, match="photo 1: no face found"):
        enroll(client, "Nobody Yet", [generated_inputs["image"]])
    with pytest.raises(AppError, match="photo 1 shows 2 faces"):
        enroll(client, "Group Photo", [two_faces_png])
    with pytest.raises(AppError, match="nobody called 'Nobody Here' is enrolled"):
        client.predict(name="Nobody Here", api_name="/remove_person")
    with pytest.raises(AppError, match="choose or type the name"):
        client.predict(name="", api_name="/remove_person")
    # Nothing was added, and the server still answers.
    listed = people(client)
    assert not {"../x", "x", "a/b", "Nobody Yet", "Group Photo"} & set(listed)
    assert recognise(client, face=CLEAR_S1)["identity"] == "s1"


def test_several_faces_warn_and_use_the_largest(client, two_faces_png):
    result = recognise(client, face=two_faces_png)
    assert any("2 faces" in n for n in result["notes"]), result["notes"]


def test_every_curated_portrait_example_loads_and_gives_the_documented_answer():
    """assets/portrait/examples.json: clear face -> s1, blurred face + voice -> s1, stranger -> unknown."""
    import json

    from mbm.paths import PORTRAIT_EXAMPLES
    from mbm.ui.examples import load_examples

    entries = json.loads(PORTRAIT_EXAMPLES.read_text(encoding="utf-8"))
    rows, captions = load_examples(PORTRAIT_EXAMPLES, file_keys=("face", "voice"))
    assert len(rows) == len(entries) == 3 and captions == [e["caption"] for e in entries]
    from mbm.scenarios.portrait.predictor import PortraitPredictor

    shipped = PortraitPredictor.from_checkpoint(gallery_folder=None)  # the shipped gallery, nothing written
    got = [shipped.predict(face=face, voice=voice, text=text).identity for face, voice, text in rows]
    assert got == ["s1", "s1", "unknown"], list(zip(captions, got))
