"""The pretrained SqueezeNet image path (issue #17): weight reader, port, encoder shapes, "no device"."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mbm.config import EncoderConfig, ImageConfig, ModelConfig
from mbm.features.squeezenet import (SHA256, SqueezeNet, WeightFileError, expected_shapes, pretrained_squeezenet,
                                     read_weights, weights_path)
from mbm.preprocess import prepare_image, read_image

ROOT = Path(__file__).resolve().parent.parent


def test_weights_come_from_the_installed_package_and_validate():
    path = weights_path()
    assert path.is_file() and "ndf" in path.parts
    weights = read_weights()
    assert set(weights) == set(expected_shapes())
    assert weights["conv1"][0].shape == (3, 3, 3, 64) and weights["conv10"][0].shape == (1, 1, 512, 1000)
    assert all(k.dtype == np.float32 and b.dtype == np.float32 for k, b in weights.values())


class _RunsCode:
    """Unpickling this calls os.system: what a tampered weight file would do."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_tampered_weight_files_are_refused(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"conv1": [_RunsCode(), np.zeros(64, np.float32)]}))
    with pytest.raises(WeightFileError, match="sha256"):
        read_weights(evil)
    with pytest.raises(WeightFileError, match="os|posix|system"):  # even when the checksum is not checked
        read_weights(evil, check_sha256=False)

    good = read_weights()
    wrong = {k: [kernel, bias] for k, (kernel, bias) in good.items()}
    wrong["fire5/expand3x3"] = [np.zeros((3, 3, 32, 64), np.float32), np.zeros(64, np.float32)]
    bad_shape = tmp_path / "shape.pkl"
    bad_shape.write_bytes(pickle.dumps(wrong))
    with pytest.raises(WeightFileError, match="fire5/expand3x3"):
        read_weights(bad_shape, check_sha256=False)

    missing = {k: v for k, v in wrong.items() if k != "conv10"}
    (tmp_path / "missing.pkl").write_bytes(pickle.dumps(missing))
    with pytest.raises(WeightFileError, match="conv10"):
        read_weights(tmp_path / "missing.pkl", check_sha256=False)
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(WeightFileError):
        read_weights(tmp_path / "junk.pkl", check_sha256=False)
    assert len(SHA256) == 64


def test_port_reads_a_known_photo():
    """The shipped lamp photo is an ImageNet 'table lamp' (846) or 'lampshade' (619), top-5."""
    cfg = ImageConfig(size=160)
    img = prepare_image(read_image(str(ROOT / "assets" / "voice_control" / "lamp.jpg"), cfg), cfg)
    x = torch.from_numpy(img.shown).permute(2, 0, 1)[None].float()  # RGB 0..255
    with torch.no_grad():
        top5 = pretrained_squeezenet()(x).topk(5).indices[0].tolist()
    assert 846 in top5 or 619 in top5, top5


def test_tensorflow_same_padding_and_grid_sizes():
    assert [SqueezeNet.grid_size(s) for s in (128, 160, 224)] == [7, 9, 13]
    with torch.no_grad():
        grid = pretrained_squeezenet().features(torch.zeros(1, 3, 160, 160))
    assert grid.shape == (1, 512, 9, 9)


def test_encoder_shapes_and_checkpoint_size():
    from mbm.features.squeezenet_encoder import SCORE_CHANNELS, SqueezeNetImageEncoder
    from mbm.model import MultimodalModel

    enc = SqueezeNetImageEncoder(EncoderConfig(dim=64), ImageConfig(size=160))
    pixels = torch.rand(2, 3, 160, 160) - 0.5
    out = enc(pixels)
    assert out.tokens.shape == (2, 81, 64) and out.mask.shape == (2, 81) and bool(out.mask.all())
    maps = enc.score_map(__import__("mbm.features.squeezenet_encoder", fromlist=["x"]).backbone_outputs(pixels))
    assert maps.shape == (2, SCORE_CHANNELS, 9, 9)
    assert torch.allclose(enc(maps).tokens, out.tokens, atol=1e-5)  # cached score maps = the pixel path
    verdict = enc.recognise(pixels)
    assert verdict["device_probs"].shape == (2, 7) and verdict["accepted"].shape == (2,)
    cfg = ModelConfig()
    cfg.encoder.image_backbone, cfg.image.size = "squeezenet1_1", 160
    model = MultimodalModel(cfg)
    # the frozen backbone is not part of the model's weights (it comes from the ndf package)
    assert not any(k.startswith("encoders.image.") and "fire" in k for k in model.state_dict())
    assert sum(v.numel() for v in model.encoders["image"].state_dict().values()) < 50_000


def _shipped():
    """The shipped voice-control checkpoint on SqueezeNet: the default one if it is, else the candidate."""
    from mbm.checkpoint import load_checkpoint

    for name in ("voice_control.pt", "voice_control_squeezenet.pt"):
        path = ROOT / "checkpoints" / name
        if path.is_file():
            ckpt = load_checkpoint(path, "voice_control")
            if ckpt.config.encoder.image_backbone != "cnn":
                return ckpt
    pytest.skip("no shipped voice-control checkpoint on the pretrained SqueezeNet")


def test_shipped_model_says_no_device_for_plain_colour_and_noise():
    from mbm.errors import InputError
    from mbm.scenarios.voice_control.predictor import VoiceControlPredictor

    ckpt = _shipped()
    assert ckpt.extra["image_backbone"]["sha256"] == SHA256
    predictor = VoiceControlPredictor(ckpt)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    near_plain = np.clip(np.full((200, 200, 3), (40, 90, 200)) + rng.normal(0, 3, (200, 200, 3)), 0, 255)
    near_plain = near_plain.astype(np.uint8)
    plain = np.full((200, 200, 3), (30, 60, 220), dtype=np.uint8)
    for image in (noise, near_plain, plain):
        result = predictor.predict(image=image, text="turn it up")
        assert result.device_recognised is False and result.sees is None
        assert any("no device recognised" in w for w in result.warnings)
        assert result.modality_weights["image"] == 0.0
        with pytest.raises(InputError, match="no device recognised"):
            predictor.predict(image=image)
    lamp = predictor.predict(image=str(ROOT / "assets" / "voice_control" / "lamp.jpg"))
    assert lamp.device_recognised is True and lamp.sees[0] == "lamp"
