"""The People list's face thumbnails: made at enrolment, bounded, saved with the gallery,
gone with the person; shipped people get a committed photo or a generated avatar."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mbm.scenarios.portrait.gallery import (
    MAX_THUMBNAIL_BYTES,
    THUMBNAIL_PX,
    Gallery,
    check_thumbnail,
    face_thumbnail,
    thumbnail_uri,
)

ROOT = Path(__file__).resolve().parent.parent
STRANGER = sorted((ROOT / "assets" / "portrait" / "faces" / "orl" / "s18").glob("*.pgm"))  # not shipped


def _chip(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((150, 150, 3)) * 255).astype(np.uint8)


def _flat_jpeg(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (90, 120, 150)).save(buffer, format="JPEG")  # small in bytes, large in pixels
    return buffer.getvalue()


def test_a_face_thumbnail_is_a_small_jpeg():
    data = face_thumbnail(_chip())  # noise: the hardest picture to compress
    assert data[:3] == b"\xff\xd8\xff" and len(data) <= MAX_THUMBNAIL_BYTES
    assert Image.open(io.BytesIO(data)).size == (THUMBNAIL_PX, THUMBNAIL_PX)
    assert thumbnail_uri(data) == "data:image/jpeg;base64," + base64.b64encode(data).decode()
    assert thumbnail_uri(None) is None


@pytest.mark.parametrize("bad, why", [
    (b"GIF89a" + bytes(100), "not a JPEG"),
    (b"\xff\xd8\xff" + bytes(100), "not a readable JPEG"),
    (_flat_jpeg(256), "256x256"),  # a JPEG under the byte limit, but larger than a thumbnail
    (bytes(MAX_THUMBNAIL_BYTES + 1), "limit"),
    ("data:image/jpeg;base64,AAAA", "must be JPEG bytes"),
], ids=["gif", "broken-jpeg", "large-jpeg", "too-many-bytes", "text"])
def test_anything_but_a_small_jpeg_is_refused(bad, why):
    with pytest.raises(ValueError, match=why):
        check_thumbnail(bad)
    with pytest.raises(ValueError, match=why):
        Gallery().add("Dana", np.ones((1, 128)), thumbnail=bad)


def test_thumbnails_are_saved_loaded_and_removed_with_the_person(tmp_path):
    g = Gallery()
    thumb = face_thumbnail(_chip())
    g.add("Dana", np.ones((1, 128)), thumbnail=thumb)
    g.add("Eve", np.ones((1, 128)))
    loaded = Gallery.load(g.save(tmp_path))
    assert loaded.people["Dana"].thumbnail == thumb and loaded.people["Eve"].thumbnail is None
    loaded.remove("Dana")
    loaded.save(tmp_path)
    assert base64.b64encode(thumb).decode() not in (tmp_path / "gallery.json").read_text()


def test_a_damaged_or_oversized_saved_thumbnail_is_dropped_not_fatal(tmp_path):
    g = Gallery()
    g.add("Dana", np.ones((1, 128)), thumbnail=face_thumbnail(_chip()))
    g.add("Eve", np.ones((1, 128)), thumbnail=face_thumbnail(_chip(1)))
    data = g.to_json()
    data["people"][0]["thumbnail"] = "not base64!"
    data["people"][1]["thumbnail"] = base64.b64encode(bytes(10 * MAX_THUMBNAIL_BYTES)).decode()
    (tmp_path / "gallery.json").write_text(json.dumps(data))
    loaded = Gallery.load(tmp_path)
    assert len(loaded) == 2 and all(p.thumbnail is None for p in loaded.people.values())


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    from mbm.scenarios.portrait.predictor import PortraitPredictor

    return PortraitPredictor.from_checkpoint(gallery_folder=None)


def test_an_enrolment_lists_its_face_and_removing_the_person_removes_it(predictor):
    session = Gallery()
    predictor.enrol("Dana", STRANGER[:2], session=session)
    thumb = session.people["Dana"].thumbnail
    assert check_thumbnail(thumb) == thumb
    mine = {p["name"]: p for p in predictor.list_people(session)}
    assert mine["Dana"]["thumbnail"] == thumbnail_uri(thumb)
    assert mine["s1"]["thumbnail"] is None  # the shipped people's dataset photos are not in the repository
    predictor.remove("Dana", session=session)
    assert "Dana" not in {p["name"] for p in predictor.list_people(session)} and not len(session)


def test_the_people_list_shows_a_face_a_committed_photo_or_an_avatar(predictor, monkeypatch):
    from mbm.ui import models
    from mbm.ui import portrait_people as portrait

    monkeypatch.setattr(models, "predictor", lambda name: predictor)
    session = Gallery()
    predictor.enrol("Dana", STRANGER[:1], session=session)
    rows, _ = portrait.people_view(predictor.list_people(session))
    faces = {row[1]: row[0] for row in rows}
    assert faces["Dana"].startswith('<img src="data:image/jpeg;base64,')  # the enrolment face
    assert faces["Alex (s1)"].startswith('<img src="data:image/jpeg;base64,')  # assets/portrait/faces/orl/s1
    assert faces["Jordan (s10)"].startswith("<svg") and ">J</text>" in faces["Jordan (s10)"]  # no photo: initial
    assert 'alt="Dana"' in faces["Dana"]
    # a hostile list entry cannot inject markup through the thumbnail field
    hostile = portrait.face_cell({"name": "Eve", "origin": "yours", "thumbnail": 'x" onerror="alert(1)'})
    assert "onerror" not in hostile and hostile.startswith("<svg")
