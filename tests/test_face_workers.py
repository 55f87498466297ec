"""The face model in worker processes (mbm.face_workers) gives what it gives in-process, and survives a dead worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dlib")

from mbm.errors import InputError  # noqa: E402
from mbm.face_features import face_embedder  # noqa: E402
from mbm.face_workers import FaceWorkerPool  # noqa: E402
from mbm.portrait_inference import PortraitPredictor  # noqa: E402
from mbm.preprocess import read_image  # noqa: E402
from mbm.config import ImageConfig  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FACE = ROOT / "assets" / "portrait" / "faces" / "orl" / "s1" / "6.pgm"


@pytest.fixture(scope="module")
def pool():
    p = FaceWorkerPool(2)
    yield p
    p.close()


def rgb(path) -> np.ndarray:
    return np.asarray(read_image(path, ImageConfig(size=256)))


def test_pool_matches_the_in_process_model(pool):
    local, remote = face_embedder()(rgb(FACE), require_face=True), pool(rgb(FACE), require_face=True)
    assert remote.detected and remote.crop.shape == (150, 150, 3)
    np.testing.assert_allclose(remote.embedding, local.embedding, atol=1e-6)
    chip, detected, n = pool.chip(rgb(FACE))
    np.testing.assert_array_equal(chip, local.crop)
    assert pool.embed_chips([chip, chip]).shape == (2, 128)


def test_an_input_error_in_a_worker_reaches_the_caller_and_the_worker_stays(pool):
    for _ in range(3):  # more errors than workers: each worker goes back to the pool after its error
        with pytest.raises(InputError, match="no face found"):
            pool(np.full((64, 64, 3), 128, np.uint8), require_face=True)
    assert pool._idle.qsize() == 2 and pool(rgb(FACE), require_face=True).detected


def test_a_killed_worker_is_replaced_and_the_call_still_answers(pool):
    victim = pool._all[0].proc
    victim.kill()
    victim.wait()
    for _ in range(3):  # whichever worker each call gets, it answers
        assert pool(rgb(FACE)).detected
    assert len(pool._all) == 2 and victim not in [w.proc for w in pool._all]


def test_predictor_with_a_pool_recognises_as_in_process(pool):
    in_process = PortraitPredictor.from_checkpoint(gallery_folder=None)
    pooled = PortraitPredictor.from_checkpoint(gallery_folder=None, faces=pool)
    a, b = in_process.predict(face=FACE), pooled.predict(face=FACE)
    assert a.identity == b.identity == "s1" and a.top5 == b.top5
