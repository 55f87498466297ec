"""Fast unit tests of the portrait pieces: names, gallery persistence, the fusion model. No data needed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mbm.scenarios.portrait.engine import Queries, fuse, gallery_tensors
from mbm.scenarios.portrait.gallery import Gallery, gallery_dir, validate_name
from mbm.scenarios.portrait.model import FEATURE_DIMS, PortraitModel, load_portrait_model, save_portrait_model


def unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def small_gallery(n=4, seed=0) -> Gallery:
    rng = np.random.default_rng(seed)
    g = Gallery()
    for i in range(n):
        g.add(f"person {i}", unit(rng, 2, 128), unit(rng, 1, 256)[0] if i % 2 == 0 else None,
              "tall, wears glasses" if i == 0 else None)
    return g


@pytest.mark.parametrize("bad", ["", "   ", "../etc/passwd", "a/b", "a\\b", "..", ".hidden", "x" * 65,
                                 "unknown", "nul\x00byte", "semi;colon", "a*b", None, 5])
def test_unsafe_names_are_refused(bad):
    with pytest.raises(ValueError):
        validate_name(bad)


def test_good_names_are_normalised():
    assert validate_name("  Ada   Lovelace ") == "Ada Lovelace"
    assert validate_name("José O'Neil-Smith (2)") == "José O'Neil-Smith (2)"


def test_gallery_add_remove_duplicate():
    g = small_gallery()
    with pytest.raises(ValueError, match="already enrolled"):
        g.add("person 0", np.ones((1, 128)))
    with pytest.raises(ValueError, match="nobody"):
        g.remove("nobody here")
    g.remove("person 1")
    assert "person 1" not in g and len(g) == 3


def test_gallery_round_trip_and_env_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MBM_GALLERY_DIR", str(tmp_path / "g"))
    assert gallery_dir() == tmp_path / "g"
    g = small_gallery()
    path = g.save(gallery_dir())
    assert path == tmp_path / "g" / "gallery.json"
    h = Gallery.load(gallery_dir())
    assert h.names() == g.names()
    np.testing.assert_allclose(h.people["person 0"].face, g.people["person 0"].face, atol=1e-5)
    assert h.people["person 1"].voice is None and h.people["person 0"].profile == "tall, wears glasses"


def test_interrupted_write_keeps_the_old_gallery(tmp_path, monkeypatch):
    g = small_gallery()
    g.save(tmp_path)
    before = (tmp_path / "gallery.json").read_bytes()
    bigger = small_gallery(6, seed=1)

    def crash(*a, **k):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(json, "dump", crash)
    with pytest.raises(KeyboardInterrupt):
        bigger.save(tmp_path)
    assert (tmp_path / "gallery.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["gallery.json"]  # no temp file left behind


def test_damaged_gallery_file_gives_a_clear_error(tmp_path):
    (tmp_path / "gallery.json").write_text('{"format": "mbm-portrait-gallery/1", "people": [')
    with pytest.raises(ValueError, match="damaged"):
        Gallery.load(tmp_path)


def test_fusion_weights_sum_to_one_absent_is_zero_and_gradients_flow():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = PortraitModel()
    g = gallery_tensors(small_gallery())
    b = 5
    q = Queries(face=torch.from_numpy(unit(rng, b, 128)), face_quality=torch.ones(b),
                voice=torch.from_numpy(unit(rng, b, 256)),
                present={"image": torch.ones(b, dtype=torch.bool), "audio": torch.tensor([1, 0, 1, 0, 1]).bool()})
    out = fuse(model, q, g)
    assert out.scores.shape == (b, 4)
    w = out.modality_weights
    torch.testing.assert_close(w.sum(1), torch.ones(b))
    assert (w[:, 2] == 0).all()  # no profile given
    assert (w[torch.tensor([1, 3]), 0] == 0).all()  # voice masked for these samples
    assert torch.isfinite(out.scores).all()
    out.scores.logsumexp(1).sum().backward()
    for name, p in model.named_parameters():
        if name.startswith(("backbone.encoders.text", "backbone.heads")):
            continue  # no profile in this batch
        if name.startswith("backbone.fusion.value"):
            continue  # the pooled vector is not used: the score fuses per-modality similarities
        assert p.grad is not None, name


def test_face_only_prefers_the_matching_person():
    gal = small_gallery()
    model = PortraitModel().eval()
    face = torch.from_numpy(gal.people["person 2"].face)[None]
    with torch.no_grad():
        out = fuse(model, Queries(face=face, face_quality=torch.ones(1)), gallery_tensors(gal))
    assert out.scores.argmax().item() == 2
    torch.testing.assert_close(out.modality_weights, torch.tensor([[0.0, 1.0, 0.0]]))


def test_checkpoint_round_trip(tmp_path):
    model = PortraitModel()
    model.threshold.fill_(0.42)
    save_portrait_model(model, tmp_path / "p.pt", extra={"x": 1})
    m2, extra = load_portrait_model(tmp_path / "p.pt")
    assert extra == {"x": 1} and float(m2.threshold) == pytest.approx(0.42)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_portrait_model(tmp_path / "bad.pt")
    assert set(FEATURE_DIMS) == {"audio", "image", "text"}
