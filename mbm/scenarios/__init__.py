"""The scenarios: one entry each says what the scenario is and where its parts live.

Every scenario keeps one contract (``docs/design.md``, "Adding a scenario"): a package
``<package>/`` with ``spec.py`` (labels, modalities and what they mean: no model code), ``model.py``
(its network), ``train.py`` and ``evaluate.py`` (each a ``main(argv)``), ``predictor.py`` (a class with
``from_checkpoint(path)`` and one ``predict(...)``) and ``recipe.json`` (the shipped training recipe);
a tab ``ui/<name>.py``; and a checkpoint in the common format (:mod:`mbm.checkpoint`).
``python -m mbm.train``, ``python -m mbm.evaluate``, ``app.py`` and ``mbm.ui.models`` find them here;
adding a scenario is its modules plus one entry in ``SCENARIOS``. Parts are named as
``"module:attribute"`` and imported only when used, so choosing one scenario never loads another's
dependencies.
"""

from __future__ import annotations

import importlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbm.paths import PORTRAIT_CHECKPOINT, RETRIEVAL_CHECKPOINT, VOICE_CONTROL_CHECKPOINT

MODULES = ("spec", "model", "train", "evaluate", "predictor")  # the modules of every scenario's package


@dataclass(frozen=True)
class Scenario:
    """What a scenario is, and where each of its parts lives."""

    name: str  # the --scenario value and the tab id
    title: str  # the tab's title
    inputs: dict[str, str]  # model modality -> what a person gives for it (``--help`` lists them)
    output: str  # what the model answers (``--help``)
    checkpoint: Path  # the shipped weights, which ``mbm.ui.models`` hands to the predictor's from_checkpoint
    spec: str  # the spec module; its package holds the scenario's other modules and recipe.json
    train: str  # "module:main" of ``python -m mbm.train --scenario <name>``
    evaluate: str  # "module:main" of ``python -m mbm.evaluate --scenario <name>``
    tab: str  # "ui.<name> module:function()" building the tab; returns None or a chain of page-load events
    predictor: str  # "module:Class" with ``from_checkpoint(path)`` and ``predict(...)`` (mbm.ui.models)

    def part(self, which: str) -> Any:
        """The object named by the field ``which`` (``"train"``, ``"evaluate"``, ``"tab"``, ...), imported now."""
        module, _, attribute = getattr(self, which).partition(":")
        module = importlib.import_module(module)
        return getattr(module, attribute) if attribute else module

    @property
    def package(self) -> str:
        """The scenario's package (the one its spec module is in)."""
        return self.spec.rpartition(".")[0]

    def describe(self) -> str:
        """One line for ``--help``: name, title, each input, the output and the checkpoint's file."""
        inputs = "; ".join(f"{m}: {what}" for m, what in self.inputs.items())
        return f"{self.name} ({self.title}): {inputs} -> {self.output} [{self.checkpoint.name}]"

    def contract_problems(self) -> list[str]:
        """What this scenario lacks of the contract; ``[]`` when it keeps all of it. Imports every part."""
        problems = []
        for module in MODULES:
            try:
                importlib.import_module(f"{self.package}.{module}")
            except ImportError as e:
                problems.append(f"{self.package}.{module} cannot be imported: {e}")
        if problems:
            return problems
        for which in ("train", "evaluate", "predictor"):
            if getattr(self, which).partition(":")[0] != f"{self.package}.{which}":
                problems.append(f"{which} is not in {self.package}.{which}: {getattr(self, which)}")
        for which in ("train", "evaluate"):
            main = self.part(which)
            if getattr(self, which).partition(":")[2] != "main" or not _takes_argv(main):
                problems.append(f"{which} is not a main(argv): {getattr(self, which)}")
        predictor = self.part("predictor")
        problems += [f"the predictor has no {m}()" for m in ("from_checkpoint", "predict")
                     if not callable(getattr(predictor, m, None))]
        if self.tab.partition(":")[0].split(".")[-2:] != ["ui", self.name] or not callable(self.part("tab")):
            problems.append(f"the tab is not a function of a module ui/{self.name}.py: {self.tab}")
        recipe = Path(self.part("spec").__file__).with_name("recipe.json")
        if not recipe.is_file() or not isinstance(json.loads(recipe.read_text(encoding="utf-8")), dict):
            problems.append(f"no recipe (a JSON object) at {recipe}")
        if not self.inputs or not all(isinstance(v, str) and v for v in (*self.inputs.values(), self.output)):
            problems.append("inputs and output must say what a person gives and gets")
        return problems


def _takes_argv(function) -> bool:
    """Whether ``function`` can be called with one positional argument (the command line's arguments)."""
    try:
        inspect.signature(function).bind([])
    except (TypeError, ValueError):
        return False
    return callable(function)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("voice_control", "Voice control",
             inputs={"audio": "a spoken command", "image": "a photo of the device", "text": "a typed command"},
             output="the device action (the photo decides what the word does)",
             checkpoint=VOICE_CONTROL_CHECKPOINT, spec="mbm.scenarios.voice_control.spec",
             train="mbm.scenarios.voice_control.train:main",
             evaluate="mbm.scenarios.voice_control.evaluate:main",
             tab="mbm.ui.voice_control:voice_control_tab",
             predictor="mbm.scenarios.voice_control.predictor:VoiceControlPredictor"),
    Scenario("portrait", "Portrait recognition",
             inputs={"image": "a face photo", "audio": "a voice clip", "text": "a short text profile"},
             output="who it is among the enrolled people, or unknown",
             checkpoint=PORTRAIT_CHECKPOINT, spec="mbm.scenarios.portrait.spec",
             train="mbm.scenarios.portrait.train:main", evaluate="mbm.scenarios.portrait.evaluate:main",
             tab="mbm.ui.portrait:portrait_tab", predictor="mbm.scenarios.portrait.predictor:PortraitPredictor"),
    Scenario("retrieval", "Search",
             inputs={"audio": "a spoken query", "image": "a photo query",
                     "text": "a typed query (+ an optional negative)"},
             output="the top-k items of a collection, each with every input's exact share of its score",
             checkpoint=RETRIEVAL_CHECKPOINT, spec="mbm.scenarios.retrieval.spec",
             train="mbm.scenarios.retrieval.train:main", evaluate="mbm.scenarios.retrieval.evaluate:main",
             tab="mbm.ui.retrieval:search_tab",
             predictor="mbm.scenarios.retrieval.predictor:RetrievalPredictor"),
)}
