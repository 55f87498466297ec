"""CI check: the app as a Space runs it, every named API endpoint called once and answering.

``python app.py`` with the packages of requirements.txt (CI installs only it plus the test tools in
tests/requirements.txt; requirements-nodeps.txt is gone), the portrait voice included: the speaker
encoder's weights ship in checkpoints/. The list of endpoints must match the app's: a new endpoint
fails this test until a call for it is added here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file

ROOT = Path(__file__).resolve().parent.parent
VC = ROOT / "assets" / "voice_control"
PT = ROOT / "assets" / "portrait"
TOKEN = "ci-owner-token"


def test_every_endpoint_once(launch_app, tmp_path_factory, generated_inputs):
    audio, image = handle_file(str(generated_inputs["audio"])), handle_file(str(generated_inputs["image"]))
    face = handle_file(str(PT / "examples" / "s1_clear.png"))
    voice = handle_file(str(next((PT / "fsdd" / "recordings").glob("*_george_*.wav"))))
    s18 = [handle_file(str(PT / "faces" / "orl" / "s18" / f"{k}.pgm")) for k in (1, 2, 3)]
    controls = dict(audio_noise=0.2, image_blur=0.0, image_occlusion=0.0, text_typos=0.0, use_audio=True,
                    use_image=True, use_text=True)
    calls = {
        "/voice_control": dict(audio=audio, image=image, text="turn on the fan"),
        "/voice_control_explain": dict(audio=audio, image=image, text="", **controls),
        "/voice_control_report": dict(audio=audio, image=image, text="", **controls),
        "/portrait": dict(face=face, voice=voice, text="wears glasses"),  # the portrait voice: Resemblyzer weights
        "/list_people": {},
        "/enroll": dict(name="Visitor Person", photos=s18, voice=voice, profile="tall", admin_token=""),
        "/remove_person": dict(name="Visitor Person", admin_token=""),
        "/reset_gallery": dict(admin_token=TOKEN),
        "/evaluation": {},
        "/search": dict(speech=None, photo=image, text="something to read by", negative="", w_speech=None,
                        w_photo=None, w_text=None, w_negative=None, k=4, collection=None),
    }
    folder = tmp_path_factory.mktemp("endpoints_gallery")
    with launch_app(tmp_path_factory.mktemp("endpoints_app"), MBM_GALLERY_DIR=str(folder),
                    MBM_ADMIN_TOKEN=TOKEN) as url:
        client = Client(url, verbose=False, download_files=False)
        named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
        assert named == set(calls), f"endpoints without a call here: {named - set(calls)}; gone: {set(calls) - named}"
        answers = {api: client.predict(**kwargs, api_name=api) for api, kwargs in calls.items()}
    assert answers["/voice_control"][3]["action"]
    assert answers["/portrait"][4]["identity"] == "s1" and answers["/portrait"][4]["modality_weights"]["voice"] > 0
    assert len(answers["/list_people"]) == 42
    assert answers["/enroll"][1] == {"name": "Visitor Person", "photos": 3, "voice": True, "profile": True,
                                     "where": "session"}
    assert answers["/remove_person"][1]["removed"] == "Visitor Person"
    assert answers["/reset_gallery"][1] == {"people": 42}
    assert len(answers["/voice_control_report"]) == 3
    assert 1 <= len(answers["/search"][2]["results"]) <= 4
