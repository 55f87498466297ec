"""The training command: the shipped recipe as the default, usage errors before any work, and DDP."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.multiprocessing as mp
from PIL import Image

from mbm.config import FusionConfig, TrainConfig
from mbm.scenarios.voice_control.train import RECIPE, load_recipe
from mbm.train import main


@pytest.mark.parametrize("flags, message", [
    (["--real-share", "1.5"], "--real-share is a share: expected 0..1"),
    (["--real-share", "-0.1"], "--real-share is a share: expected 0..1"),
    (["--steps", "0"], "--steps must be positive"),
    (["--precision", "fp16"], "invalid choice"),
    (["--tts-seed", "abc"], "invalid int value"),
    (["--pooling", "joint"], "unrecognized arguments"),  # experiment options are gone (docs/history.md)
])
def test_bad_training_options_are_usage_errors(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--scenario", "voice_control", "--data", str(tmp_path), *flags])
    assert exit_info.value.code == 2  # argparse's usage error, not a traceback
    assert message in capsys.readouterr().err


def test_a_recipe_with_an_unknown_field_is_a_usage_error(tmp_path, capsys):
    recipe = json.loads((RECIPE).read_text())
    recipe["train"]["rank_weight"] = 1.0
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    with pytest.raises(SystemExit):
        main(["--scenario", "voice_control", "--data", str(tmp_path), "--recipe", str(tmp_path / "r.json")])
    assert "unknown train fields ['rank_weight']" in capsys.readouterr().err


@pytest.mark.parametrize("recipe, checkpoint", [(RECIPE, "voice_control.pt"),
                                                (RECIPE.with_name("recipe_cnn.json"), "voice_control_cnn.pt")])
def test_the_recipe_is_the_shipped_checkpoints_training_config(recipe, checkpoint):
    """recipe.json reproduces checkpoints/voice_control.pt (stage 2), recipe_cnn.json the stage-1
    checkpoint it starts from: the same training settings."""
    from mbm.checkpoint import load_checkpoint
    from mbm.paths import CHECKPOINTS

    train, fusion = load_recipe(recipe)
    shipped = load_checkpoint(CHECKPOINTS / checkpoint, "voice_control")
    used = shipped.metrics["train_config"]
    for key, value in vars(train).items():
        if key in used:
            assert used[key] == value, key
    assert shipped.config.encoder.image_backbone == train.image_backbone
    # stage 2 starts from stage 1's committed checkpoint; stage 1 starts from nothing
    assert bool(train.init_from) == (checkpoint == "voice_control.pt")
    assert not train.init_from or (CHECKPOINTS.parent / train.init_from).is_file()
    # The checkpoint's fusion is the recipe's with the after-training settings applied.
    assert shipped.config.fusion.pooling == fusion.pooling == "evidence"
    assert shipped.config.fusion.evidence_reattend == train.reattend_after_training
    assert shipped.config.fusion.evidence_gain == train.evidence_gain_after_training
    assert isinstance(fusion, FusionConfig) and isinstance(train, TrainConfig)


WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DEVICES = ("blinds", "door", "fan", "heater", "lamp", "music_player", "tv")


def _tiny_data(root: Path) -> Path:
    """A folder laid out like ../shared/data: 3 speakers x 20 words of tones, 4 photos per device."""
    rng = np.random.default_rng(0)
    for k, word in enumerate(WORDS):
        folder = root / "speech_commands" / word
        folder.mkdir(parents=True)
        for speaker in ("aa11", "bb22", "cc33"):
            t = np.arange(16000) / 16000
            wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * k) * t) + 0.01 * rng.standard_normal(16000)
            sf.write(folder / f"{speaker}_nohash_0.wav", wave.astype(np.float32), 16000)
    for k, device in enumerate(DEVICES):
        folder = root / "devices" / device
        folder.mkdir(parents=True)
        for i in range(4):
            pixels = (rng.random((80, 80, 3)) * 60 + 30 * k).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"x_{device}{i}.jpg")
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, data: str, out: str) -> None:
    """One torchrun-like process: the environment torchrun sets, then the training command."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    # stage 1's recipe (the whole model from scratch): stage 2 fine-tunes the EfficientNet top, minutes per rank
    ckpt = main(["--scenario", "voice_control", "--data", data, "--out", f"{out}/model.pt", "--steps", "6",
                 "--recipe", str(RECIPE.with_name("recipe_cnn.json")),
                 "--batch-size", "8", "--tts-per-word", "0", "--precision", "fp32", "--threads", "1",
                 "--tts-dir", f"{out}/tts"])
    torch.save(ckpt.state_dict, f"{out}/rank{rank}.pt")


def test_two_process_ddp_training_ends_with_identical_weights_and_a_loadable_checkpoint(tmp_path):
    """torchrun's data parallelism on gloo: 2 ranks, a few steps; same weights on both, one checkpoint."""
    from mbm.checkpoint import load_checkpoint

    data = _tiny_data(tmp_path / "data")
    mp.spawn(_rank, args=(2, _free_port(), str(data), str(tmp_path)), nprocs=2, join=True)
    weights = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=0, atol=0, msg=name)
    ckpt = load_checkpoint(tmp_path / "model.pt", "voice_control")
    assert ckpt.metrics["world_size"] == 2 and "heldout" in ckpt.metrics
    for name, value in ckpt.state_dict.items():
        torch.testing.assert_close(value, weights[0][name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("scenario", ["portrait", "retrieval"])
def test_each_scenarios_recipe_file_is_the_default_and_options_override_it(scenario, tmp_path, capsys):
    """mbm/scenarios/<name>/recipe.json gives the defaults; a command-line option wins; an unknown key is refused."""
    import argparse

    from mbm.cli import read_recipe
    from mbm.paths import ROOT

    recipe = ROOT / "mbm" / "scenarios" / scenario / "recipe.json"
    values = {k: v for k, v in json.loads(recipe.read_text()).items() if k != "about"}
    parser = argparse.ArgumentParser()
    for key, value in values.items():
        parser.add_argument(f"--{key}", type=type(value))
    read_recipe(parser, recipe)
    assert vars(parser.parse_args([])) == values
    assert vars(parser.parse_args(["--steps", "3"]))["steps"] == 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**values, "warp": 1}))
    with pytest.raises(SystemExit):
        read_recipe(parser, bad)
    assert "unknown recipe options ['warp']" in capsys.readouterr().err
