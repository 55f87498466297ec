"""dlib's face-recognition ResNet read into torch (mbm.features.dlib_resnet) gives dlib's own descriptors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mbm.features.dlib_resnet import DlibFormatError, add_overlapping, load_dlib_face_net, read_dlib_layers
from mbm.features.face import face_embedder, package_file

ROOT = Path(__file__).resolve().parents[1]
MODEL_FILE = package_file("face_recognition_models", "models", "dlib_face_recognition_resnet_model_v1.dat")
FACES = sorted((ROOT / "assets" / "portrait").rglob("*.png"))


def test_the_file_holds_the_expected_network():
    layers = read_dlib_layers(MODEL_FILE)
    names = [layer.name for layer in layers]
    assert names.count("con_4") == 29 and names.count("affine_") == 29 and names.count("add_prev_") == 14
    assert layers[1].floats == pytest.approx([122.782, 117.001, 104.298], abs=1e-3)  # dlib's mean RGB
    net = load_dlib_face_net(MODEL_FILE)
    assert len(net.blocks) == 14 and sum(b.downsample for b in net.blocks) == 4
    assert sum(p.numel() for p in net.parameters()) > 5_000_000


def test_torch_descriptors_equal_dlibs_own():
    import dlib
    from PIL import Image

    assert len(FACES) >= 5
    embedder = face_embedder()
    chips = [embedder.chip(np.asarray(Image.open(f).convert("RGB")))[0] for f in FACES]
    reference = dlib.face_recognition_model_v1(str(MODEL_FILE))
    expected = np.asarray(reference.compute_face_descriptor(chips), np.float32)  # (N, 128)
    with torch.inference_mode():
        got = embedder.net(torch.from_numpy(np.stack(chips))).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # and different faces give clearly different descriptors (not a constant output)
    assert np.linalg.norm(expected[0] - expected[-1]) > 0.1


def test_add_overlapping_is_dlibs_add_prev():
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 1, 4, 4), 10.0)  # fewer channels, larger map
    out = add_overlapping(a, b)
    assert out.shape == (1, 2, 4, 4)
    assert out[0, 0, :3, :3].eq(11).all() and out[0, 0, 3, :].eq(10).all()
    assert out[0, 1, :3, :3].eq(1).all() and out[0, 1, 3, :].eq(0).all()
    same = torch.randn(1, 2, 3, 3)
    assert torch.equal(add_overlapping(same, same), same + same)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.999])
def test_a_damaged_model_file_is_a_clear_error(tmp_path, keep):
    data = MODEL_FILE.read_bytes()
    bad = tmp_path / "face_model.dat"
    bad.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(DlibFormatError, match="face_model.dat"):
        load_dlib_face_net(bad)
