"""The scenario contract (``mbm.scenarios``): each registered scenario keeps it, and a tiny fourth scenario
(``tests/tiny_scenario``: two inputs, random data) built through it alone trains, evaluates, saves, loads and
predicts by the same commands and registry the real ones use. The steps are those of docs/design.md,
"Adding a scenario"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mbm.checkpoint import FORMAT
from mbm.errors import InputError
from mbm.scenarios import MODULES, SCENARIOS, Scenario

ROOT = Path(__file__).resolve().parent.parent
REAL = ("voice_control", "portrait", "retrieval")


def tiny_entry(checkpoint: Path, **changes) -> Scenario:
    """The tiny scenario's registry entry (step 7 of "Adding a scenario")."""
    fields = dict(name="tiny", title="Tiny", inputs={"image": "8 numbers", "text": "8 numbers"},
                  output="whether image[0] + text[0] > 0", checkpoint=checkpoint, spec="tests.tiny_scenario.spec",
                  train="tests.tiny_scenario.train:main", evaluate="tests.tiny_scenario.evaluate:main",
                  tab="tests.tiny_scenario.ui.tiny:tiny_tab", predictor="tests.tiny_scenario.predictor:TinyPredictor")
    return Scenario(**(fields | changes))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny scenario registered (for this module only) and trained through ``python -m mbm.train``."""
    from mbm import train
    from mbm.ui import models

    entry = tiny_entry(tmp_path_factory.mktemp("tiny") / "tiny.pt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SCENARIOS, "tiny", entry)
        models.predictor.cache_clear()
        ckpt = train.main(["--scenario", "tiny", "--out", str(entry.checkpoint)])
        yield entry, ckpt
    models.predictor.cache_clear()


@pytest.mark.parametrize("name", REAL)
def test_every_registered_scenario_keeps_the_contract(name):
    s = SCENARIOS[name]
    assert sorted(n for n in SCENARIOS if n != "tiny") == sorted(REAL)  # a new one is added to REAL, so checked
    assert s.contract_problems() == []
    folder = ROOT.joinpath(*s.package.split("."))
    assert all((folder / f"{m}.py").is_file() for m in MODULES) and (folder / "recipe.json").is_file()
    assert (ROOT / "mbm" / "ui" / f"{name}.py").is_file() and callable(s.part("tab"))
    assert s.part("train").__name__ == "main" and s.part("evaluate").__name__ == "main"
    predictor = s.part("predictor")
    assert callable(predictor.from_checkpoint) and callable(predictor.predict)
    payload = torch.load(s.checkpoint, map_location="cpu", weights_only=True)  # one checkpoint format for all
    assert payload["format"] == FORMAT and payload["scenario"] == name


def test_the_contract_check_names_what_is_missing(tmp_path):
    good = tiny_entry(tmp_path / "tiny.pt")
    assert good.contract_problems() == []
    assert any("main(argv)" in p for p in tiny_entry(tmp_path, train="tests.tiny_scenario.train:make_data")
               .contract_problems() + tiny_entry(tmp_path, train="tests.tiny_scenario.spec:make_data")
               .contract_problems())
    assert any("predict()" in p for p in tiny_entry(tmp_path, predictor="tests.tiny_scenario.model:VectorEncoder")
               .contract_problems())
    assert any("ui/tiny.py" in p for p in tiny_entry(tmp_path, tab="tests.tiny_scenario.train:main")
               .contract_problems())
    assert any("model cannot be imported" in p for p in tiny_entry(tmp_path, spec="tests.spec").contract_problems())


def test_a_tiny_fourth_scenario_trains_evaluates_saves_loads_and_predicts(tiny, capsys):
    from mbm import evaluate
    from mbm.ui import models

    entry, ckpt = tiny
    assert entry.contract_problems() == []
    assert ckpt.metrics["steps"] == 150 and entry.checkpoint.is_file()  # the recipe's steps
    payload = torch.load(entry.checkpoint, map_location="cpu", weights_only=True)
    assert payload["format"] == FORMAT and payload["scenario"] == "tiny"  # the common format
    capsys.readouterr()
    metrics = evaluate.main(["--scenario", "tiny", "--checkpoint", str(entry.checkpoint), "--json"])
    assert json.loads(capsys.readouterr().out) == metrics
    accuracies = [metrics["accuracy"], metrics["accuracy_image_only"], metrics["accuracy_text_only"]]
    assert all(isinstance(a, float) and 0 <= a <= 1 for a in accuracies)
    # each input alone can be right 3 times in 4 at best; the trained fusion of both does much better
    assert metrics["accuracy"] > 0.9 and metrics["accuracy"] > max(accuracies[1:]) + 0.1, metrics
    predictor = models.predictor("tiny")  # the registry's predictor, from the entry's checkpoint
    zeros = [0.0] * 7
    both = predictor.predict(image=[0.2, *zeros], text=[2.0, *zeros])
    assert both["label"] == "positive" and sum(both["probs"].values()) == pytest.approx(1.0)
    assert predictor.predict(image=[0.2, *zeros], text=[-2.0, *zeros])["label"] == "negative"  # the text decides
    assert predictor.predict(image=[-3.0, *zeros])["label"] == "negative"
    alone = predictor.predict(image=[3.0, *zeros])
    assert alone["label"] == "positive" and alone["modality_weights"] == {"image": 1.0, "text": 0.0}
    assert sum(both["modality_weights"].values()) == pytest.approx(1.0) and min(both["modality_weights"].values()) > 0
    with pytest.raises(InputError):
        predictor.predict()


def test_the_tiny_tab_and_the_help_come_from_the_registry(tiny, capsys):
    import gradio as gr

    from mbm import train
    from mbm.ui import models

    entry, _ = tiny
    with gr.Blocks():
        assert entry.part("tab")() is None
    tab = entry.part("tab").__module__
    answer = __import__(tab, fromlist=["ask"]).ask("3 0 0 0 0 0 0 0", "")
    assert answer == models.predictor("tiny").predict(image=[3.0] + [0.0] * 7)
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    assert e.value.code == 0
    assert "tiny (Tiny): image: 8 numbers; text: 8 numbers -> whether image[0] + text[0] > 0 [tiny.pt]" \
        in capsys.readouterr().out
