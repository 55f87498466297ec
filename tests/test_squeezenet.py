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
    from mbm.features.device_top import trunk
    from mbm.features.squeezenet_encoder import SCORE_CHANNELS, SqueezeNetImageEncoder, to_255, top_outputs
    from mbm.model import MultimodalModel

    enc = SqueezeNetImageEncoder(EncoderConfig(dim=64), ImageConfig(size=160))
    pixels = torch.rand(2, 3, 160, 160) - 0.5
    out = enc(pixels)
    # the top's 9 x 9 grid, averaged down to 7 x 7 tokens
    assert out.tokens.shape == (2, 49, 64) and out.mask.shape == (2, 49) and bool(out.mask.all())
    trunk_out = trunk(to_255(pixels))
    assert trunk_out.shape == (2, 256, 9, 9)
    maps = enc.score_map(top_outputs(enc.top, trunk_out))
    assert maps.shape == (2, SCORE_CHANNELS, 7, 7)
    assert torch.allclose(enc(maps).tokens, out.tokens, atol=1e-5)  # cached score maps = the pixel path
    verdict = enc.recognise(pixels)
    assert verdict["device_probs"].shape == (2, 7) and verdict["accepted"].shape == (2,)
    cfg = ModelConfig()
    cfg.encoder.image_backbone, cfg.image.size = "squeezenet1_1", 160
    model = MultimodalModel(cfg)
    keys = model.state_dict()
    # the frozen trunk is not part of the model's weights (it comes from the ndf package); the top is
    assert not any(k.startswith("encoders.image.") and ("conv1." in k or "fire5" in k) for k in keys)
    assert "encoders.image.top.fires.fire6.squeeze.weight" in keys and "encoders.image.top.conv10.weight" in keys
    assert sum(v.numel() for v in model.encoders["image"].state_dict().values()) < 1_500_000


def test_untrained_top_is_the_imagenet_network_and_its_zero_shot_answer():
    """Before fine-tuning, trunk + top = the package's SqueezeNet, and the device logits are the
    zero-shot prior normalised over the devices."""
    from mbm.features.device_top import DeviceTop, trunk
    from mbm.features.imagenet_devices import zero_shot

    x = torch.rand(2, 3, 160, 160) * 255
    with torch.no_grad():
        out = DeviceTop()(trunk(x))
        whole = pretrained_squeezenet()(x)
    assert torch.allclose(out["logits"], whole, atol=1e-4)
    zs = zero_shot(whole)
    assert torch.allclose(out["device"].softmax(1), zs / zs.sum(1, keepdim=True), atol=1e-5)


def test_fine_tuning_learns_the_devices_and_is_fixed_after():
    """Photos of 7 colours, labelled with 7 devices: the untrained top gets 1 of 7 right, the
    fine-tuned one all; afterwards its weights no longer take gradients (the fusion trains next)."""
    from mbm.features.device_top import DeviceTop, fine_tune, trunk

    g = torch.Generator().manual_seed(0)
    devices = torch.arange(14) % 7
    colours = torch.rand(7, 3, generator=g) * 255
    x = colours[devices][:, :, None, None] * (0.6 + 0.4 * torch.rand(14, 1, 64, 64, generator=g))
    trunks = trunk(x)[None]  # (1 view, 14, 256, 3, 3)
    top = DeviceTop()
    with torch.no_grad():
        teacher = top(trunks[0])["logits"][None]
        before = float((top(trunks[0])["device"].argmax(1) == devices).float().mean())
    fine_tune(top, trunks, teacher, devices, steps=40, lr=3e-3, batch_size=14, distill=0.1, seed=0)
    with torch.no_grad():
        after = float((top(trunks[0])["device"].argmax(1) == devices).float().mean())
    assert before < 0.5 and after == 1.0
    assert not any(p.requires_grad for p in top.parameters())


def _shipped():
    """The shipped voice-control checkpoint: on the pretrained SqueezeNet at 192 px (issue #17)."""
    from mbm.checkpoint import load_checkpoint
    from mbm.paths import VOICE_CONTROL_CHECKPOINT

    ckpt = load_checkpoint(VOICE_CONTROL_CHECKPOINT, "voice_control")
    assert ckpt.config.encoder.image_backbone == "squeezenet1_1" and ckpt.config.image.size == 192
    return ckpt


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


def test_source_folds_leave_every_class_a_training_source():
    """Leave-sources-out folds: each source is scored in one fold, and no fold takes every source of
    a class (the class would have nothing to train on); a single-source class stays in training."""
    from mbm.features.image_eval import source_folds

    # class -> sources, shaped like ../shared/data (one source shared by three classes, one by two)
    layout = {0: ["cur", "dod", "mgs"], 1: ["cpd", "dd", "mgs"], 2: ["cal", "epf", "htt"], 3: ["htt", "lcf", "tin"],
              4: ["cal", "jsc", "tin"], 5: ["imn", "rad", "tin"], 6: ["off"]}
    devices, sources = [], []
    for d, names in layout.items():
        for i, s in enumerate(names):
            devices += [d] * (10 * (i + 1))
            sources += [s] * (10 * (i + 1))
    folds = source_folds(devices, sources, k=3)
    scored = [s for f in folds for s in f]
    assert len(scored) == len(set(scored))  # each source in at most one fold
    assert set(scored) == {s for names in layout.values() for s in names} - {"off"}
    for fold in folds:
        for names in layout.values():
            assert set(names) - fold, (fold, names)


def test_kept_apart_sources_are_never_in_the_pretrained_image_training():
    """The sources kept apart (for the unseen-source measure and the demo photos) leave the training
    photos of the SqueezeNet recipe, whatever the split."""
    from mbm.data.readers import DevicePhoto
    from mbm.scenarios.voice_control.data import KEPT_APART_SOURCES, kept_apart

    sources = ("tin", "off", *KEPT_APART_SOURCES)
    photos = [DevicePhoto(Path(f"{s}_{i}.jpg"), "lamp", s) for s in sources for i in range(3)]
    others, kept = kept_apart(photos)
    assert {p.source for p in others} == {"tin", "off"} and {p.source for p in kept} == set(KEPT_APART_SOURCES)
    assert len(others) + len(kept) == len(photos)


def test_kept_apart_metrics_score_only_the_kept_apart_photos_by_device_and_source():
    from mbm.data.readers import DevicePhoto
    from mbm.features.image_eval import kept_apart_metrics
    from mbm.scenarios.voice_control.evaluate import encode_photos

    assets = ROOT / "assets" / "voice_control"
    photos = [DevicePhoto(assets / "lamp.jpg", "lamp", "cal"), DevicePhoto(assets / "fan.jpg", "fan", "cal"),
              DevicePhoto(assets / "music_player.jpg", "music_player", "imn"),
              DevicePhoto(assets / "tv.jpg", "tv", "off")]  # a trained source: not scored
    pixels, photos = encode_photos(photos, _shipped().config.image)
    model = _shipped().build_model().eval()
    out = kept_apart_metrics(model, photos, pixels)
    by = out["device_accuracy_kept_apart_sources_by_source"]
    assert set(by) == {"fan/cal", "lamp/cal", "music_player/imn"} and all(v["n"] == 1 for v in by.values())
    # the demo's kept-apart photos were picked as read right: all three are
    assert out["device_accuracy_kept_apart_sources"] == 1.0 and all(v["rejected"] == 0.0 for v in by.values())
    assert kept_apart_metrics(model, photos[3:], pixels[3:]) == {}
