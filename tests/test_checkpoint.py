"""Checkpoint save/load: exact round trip, and a clear ValueError naming the file for anything unusable."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from mbm.checkpoint import FORMAT, Checkpoint, load_checkpoint, save_checkpoint
from mbm.model import MultimodalModel


class NotAllowlisted:
    """A class ``torch.load(weights_only=True)`` must refuse to rebuild."""

    def __init__(self):
        self.payload = "anything"


class RunsCodeWhenUnpickled:
    """Unpickling this calls ``open(marker, "w")``: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def saved(tmp_path, tiny_config):
    """A tiny checkpoint on disk whose batch-norm statistics are not the defaults."""
    torch.manual_seed(0)
    cfg = tiny_config()
    model = MultimodalModel(cfg)
    model.train()
    with torch.no_grad():  # update running means/vars so the buffers matter for the round trip
        model({"audio": torch.rand(4, cfg.audio.n_mels, cfg.audio.num_frames),
               "image": torch.rand(4, 3, cfg.image.size, cfg.image.size) - 0.5})
    ckpt = Checkpoint(scenario="voice_control", config=cfg,
                      labels={"device": [f"d{i}" for i in range(7)], "word": [f"w{i}" for i in range(20)]},
                      vocab=["<pad>", "<unk>"] + [f"t{i}" for i in range(18)],
                      extra={"actions": ["a", "b"], "action_index": [[0, 1], [1, 0]]},
                      metrics={"word_accuracy": 0.5}, state_dict=model.state_dict())
    path = tmp_path / "model.pt"
    save_checkpoint(ckpt, path)
    return path, ckpt, model.eval()


def assert_names_file(excinfo, path) -> None:
    assert str(path) in str(excinfo.value), f"the message must name {path}: {excinfo.value}"


def test_round_trip_gives_identical_outputs(saved, tiny_inputs):
    path, ckpt, model = saved
    loaded = load_checkpoint(path, "voice_control")
    assert loaded.scenario == ckpt.scenario
    assert loaded.config == ckpt.config
    assert loaded.labels == ckpt.labels and loaded.vocab == ckpt.vocab
    assert loaded.extra == ckpt.extra and loaded.metrics == ckpt.metrics
    rebuilt = loaded.build_model()
    assert not rebuilt.training, "build_model must return the model in eval mode"
    with torch.no_grad():
        a, b = model(tiny_inputs), rebuilt(tiny_inputs)
    for name in a.logits:
        assert torch.equal(a.logits[name], b.logits[name]), name
    assert torch.equal(a.modality_weights, b.modality_weights)
    for name, value in model.state_dict().items():
        assert torch.equal(value, rebuilt.state_dict()[name]), name


def test_save_is_atomic_and_leaves_no_temp_files(saved):
    path, ckpt, _ = saved
    save_checkpoint(ckpt, path)  # overwrite in place
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert load_checkpoint(path).scenario == "voice_control"


def test_save_creates_missing_folders(tmp_path, saved):
    _, ckpt, _ = saved
    path = tmp_path / "a" / "b" / "c.pt"
    save_checkpoint(ckpt, path)
    assert load_checkpoint(path).vocab == ckpt.vocab


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.pt"
    with pytest.raises(ValueError, match="not found") as e:
        load_checkpoint(path)
    assert_names_file(e, path)


def test_a_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError) as e:
        load_checkpoint(tmp_path)
    assert_names_file(e, tmp_path)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.0], ids=["half", "most", "empty"])
def test_truncated_file(saved, tmp_path, keep):
    path, _, _ = saved
    data = path.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(ValueError) as e:
        load_checkpoint(bad)
    assert_names_file(e, bad)


def test_random_bytes(tmp_path):
    bad = tmp_path / "random.pt"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError) as e:
        load_checkpoint(bad)
    assert_names_file(e, bad)


def test_pickle_of_a_class_outside_the_allowlist(saved, tmp_path):
    path, _, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["extra"] = {"trojan": NotAllowlisted()}
    bad = tmp_path / "tampered.pt"
    torch.save(payload, bad)
    with pytest.raises(ValueError, match="not a safe mbm checkpoint") as e:
        load_checkpoint(bad)
    assert_names_file(e, bad)


@pytest.mark.parametrize("how", ["torch.save", "raw pickle"])
def test_pickle_that_runs_code_is_refused_without_running_it(tmp_path, how):
    marker = tmp_path / "code_ran"
    bad = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save({"format": FORMAT, "evil": RunsCodeWhenUnpickled(marker)}, bad)
    else:
        bad.write_bytes(pickle.dumps(RunsCodeWhenUnpickled(marker), protocol=2))
    with pytest.raises(ValueError) as e:
        load_checkpoint(bad)
    assert_names_file(e, bad)
    assert not marker.exists(), "loading a checkpoint executed code from it"


def test_a_torch_file_that_is_not_an_mbm_checkpoint(tmp_path):
    bad = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="not an mbm checkpoint") as e:
        load_checkpoint(bad)
    assert_names_file(e, bad)


def test_wrong_scenario_is_refused(saved):
    path, _, _ = saved
    with pytest.raises(ValueError, match="'voice_control' checkpoint, not 'portrait'") as e:
        load_checkpoint(path, "portrait")
    assert_names_file(e, path)


def _tamper(payload: dict, how: str) -> None:
    if how == "weights of another shape":
        payload["config"]["encoder"]["dim"] = 32
    elif how == "missing weight":
        del payload["state_dict"]["fusion.query"]
    elif how == "unknown config field":
        payload["config"]["encoder"]["bogus"] = 1
    elif how == "labels not a dict":
        payload["labels"] = ["a", "b"]
    elif how == "no scenario":
        del payload["scenario"]
    elif how == "no config":
        del payload["config"]


@pytest.mark.parametrize("how", ["weights of another shape", "missing weight", "unknown config field",
                                 "labels not a dict", "no scenario", "no config"])
@pytest.mark.parametrize("scenario", [None, "voice_control"])
def test_tampered_checkpoint_gives_a_value_error_naming_the_file(saved, tmp_path, how, scenario):
    path, _, _ = saved
    payload = torch.load(path, weights_only=True)
    _tamper(payload, how)
    bad = tmp_path / "tampered.pt"
    torch.save(payload, bad)
    with pytest.raises(ValueError) as e:
        load_checkpoint(bad, scenario)
    assert_names_file(e, bad)
