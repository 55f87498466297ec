"""Hostile requests through the running app (``python app.py`` on 127.0.0.1, raw HTTP and gradio_client).

1. a playlist uploaded as a voice clip is refused (not followed);
2. a 10000x10000 PNG is refused with a message, and the server keeps answering;
3. a visitor cannot remove shipped people;
5. a file inlined as a data URL obeys the size cap (413 before Gradio parses the body);
7. wrong JSON types, missing arguments and "false" switches get messages naming the parameter.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tools.loadtest_tools import raw_call

ROOT = Path(__file__).resolve().parent.parent
FACE = ROOT / "assets" / "portrait" / "examples" / "s1_clear.png"


call = raw_call  # POST /gradio_api/call/<api>, then its event stream: (HTTP status, event, data)


def error_text(data) -> str:
    assert isinstance(data, dict) and isinstance(data.get("error"), str) and data["error"], data
    assert "Traceback" not in data["error"] and "object at 0x" not in data["error"], data["error"]
    return data["error"]


# --- 5: data URLs obey the upload cap ----------------------------------------------------------------

def test_a_big_data_url_is_refused_before_it_is_parsed(app_url):
    big = "data:image/png;base64," + "A" * (3 * 1024 * 1024)  # > MBM_MAX_REQUEST_MB (2 MB); before: accepted
    status, event, data = call(app_url, "portrait", [{"url": big}, None, ""])
    assert status == 413, (status, event, data)
    if data is not None:
        assert "larger than" in data["error"]


def test_a_small_data_url_still_works(app_url):
    inline = "data:image/png;base64," + base64.b64encode(FACE.read_bytes()).decode()
    status, event, data = call(app_url, "portrait", [{"url": inline}, None, ""])
    assert (status, event) == (200, "complete"), data
    assert data[4]["identity"] == "s1"


# --- 7: every parameter type-checked -----------------------------------------------------------------

@pytest.mark.parametrize("api,data,needle", [
    ("portrait", [None, None, 5], "text: expected text"),
    ("portrait", [None, None, ["tall"]], "text: expected text"),
    ("portrait", [[1, 2], None, ""], "face: expected a file"),
    ("portrait", [], "give a face photo, a voice clip or a profile text"),  # no arguments at all
    ("voice_control_explain", [None, None, "turn on the fan", [0.5], 0, 0, 0, True, True, True],
     "audio_noise: expected a number"),
    ("voice_control_explain", [None, None, "turn on the fan", 0, 0, 0, 0, "maybe", True, True],
     "use_audio: expected true or false"),
    ("voice_control", [None, None, 12], "text: expected text"),
    ("enroll", [["Ada"], None, None, None, None], "name: expected text"),
    ("enroll", ["x" * 100_000, None, None, None, None], "longer than 64"),
    ("enroll", ["Ada", "not a list", None, None, None], "photos: expected a list of files"),
    ("remove_person", [7, None], "name: expected text"),
    ("remove_person", [], "choose or type the name"),
])
def test_wrong_types_get_a_message_naming_the_parameter(app_url, api, data, needle):
    status, event, body = call(app_url, api, data)
    assert (status, event) == (200, "error"), body
    message = error_text(body)
    assert needle in message, message
    assert "xxxxxxxxxx" not in message  # a long input is never echoed back


def test_use_audio_false_as_text_switches_audio_off(app_url, generated_inputs):
    client = Client(app_url, verbose=False, download_files=False)
    audio, image = handle_file(str(generated_inputs["audio"])), handle_file(str(generated_inputs["image"]))
    on = client.predict(audio, image, "", 0, 0, 0, 0, True, True, True, api_name="/voice_control_explain")
    off = client.predict(audio, image, "", 0, 0, 0, 0, "false", True, True, api_name="/voice_control_explain")
    assert on["prediction"]["modality_weights"]["audio"] > 0
    assert off["prediction"]["modality_weights"]["audio"] == 0  # before: "false" read as true


def test_a_server_path_string_is_not_read(app_url):
    _, event, body = call(app_url, "portrait", [None, "/etc/hostname", ""])
    assert event == "error" and "voice: expected a file" in error_text(body)
    _, event, body = call(app_url, "portrait", [None, {"path": "/etc/hostname",
                                                             "meta": {"_type": "gradio.FileData"}}, ""])
    assert event == "error" and "not uploaded by a user" in error_text(body)  # Gradio's own path check


def test_example_paths_outside_uploads_and_assets_are_refused():
    from mbm.ui.params import file_value

    assert file_value(str(FACE), "face") == str(FACE.resolve())  # an example from the assets
    with pytest.raises(ValueError, match="face: a file path must be an upload"):
        file_value("/etc/hostname", "face")


# --- 1, 2, 3 through the app -------------------------------------------------------------------------

def test_playlist_as_voice_and_pixel_bomb_as_face_are_refused(app_url, tmp_path):
    from PIL import Image

    client = Client(app_url, verbose=False, download_files=False)
    playlist = tmp_path / "p.wav"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{ROOT}/README.md\n#EXT-X-ENDLIST\n")
    with pytest.raises(AppError, match="playlist"):
        client.predict(face=None, voice=handle_file(str(playlist)), text="", api_name="/portrait")
    bomb = tmp_path / "bomb.png"
    Image.new("L", (10_000, 10_000), 128).save(bomb)
    with pytest.raises(AppError, match="too large"):
        client.predict(face=handle_file(str(bomb)), voice=None, text="", api_name="/portrait")
    result = client.predict(face=handle_file(str(FACE)), voice=None, text="", api_name="/portrait")
    assert result[4]["identity"] == "s1"  # still answering


def test_a_visitor_cannot_empty_the_gallery(app_url):
    client = Client(app_url, verbose=False, download_files=False)
    before = [p["name"] for p in client.predict(api_name="/list_people")]
    assert len(before) >= 42
    for name in before[:5]:
        with pytest.raises(AppError, match="only the owner"):
            client.predict(name=name, api_name="/remove_person")
    with pytest.raises(AppError, match="not set MBM_ADMIN_TOKEN|admin token is wrong"):
        client.predict(admin_token="guess", api_name="/reset_gallery")
    assert [p["name"] for p in client.predict(api_name="/list_people")] == before


def test_every_file_endpoint_shares_one_concurrency_limit():
    import app
    from mbm.limits import HEAVY_CONCURRENCY_ID

    heavy = {fn.api_name for fn in app.demo.fns.values() if fn.concurrency_id == HEAVY_CONCURRENCY_ID}
    for api in ("portrait", "enroll", "voice_control", "voice_control_explain", "voice_control_report"):
        assert api in heavy, (api, heavy)


def test_data_urls_obey_the_upload_cap_in_the_handler_too(monkeypatch):
    """Whatever MBM_MAX_REQUEST_MB allows, a data URL is checked against the upload cap before decoding."""
    from mbm import limits
    from mbm.ui.params import file_value

    monkeypatch.setattr(limits, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(ValueError, match="face: the inlined file is larger than"):
        file_value({"url": "data:image/png;base64," + "A" * 4000}, "face")
    assert file_value({"url": "data:image/png;base64," + base64.b64encode(b"x" * 500).decode()}, "face") == b"x" * 500
