"""The scenarios: one entry each says what the scenario is and where its parts live.

A scenario is the spec module (``mbm/scenarios/<name>.py``: labels, modalities and what they
mean, the action table or the identities), a checkpoint, a training and an evaluation entry
point, and a tab for the app. ``python -m mbm.train``, ``python -m mbm.evaluate`` and
``app.py`` find them here; adding a scenario is its modules plus one entry in ``SCENARIOS``.
Parts are named as ``"module:attribute"`` and imported only when used, so choosing one
scenario never loads another's dependencies.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbm.paths import PORTRAIT_CHECKPOINT, RETRIEVAL_CHECKPOINT, VOICE_CONTROL_CHECKPOINT


@dataclass(frozen=True)
class Scenario:
    """What a scenario is, and where each of its parts lives."""

    name: str  # the --scenario value and the tab id
    title: str  # the tab's title
    inputs: dict[str, str]  # model modality -> what a person gives for it
    output: str  # what the model answers
    checkpoint: Path  # the shipped weights
    spec: str  # module: labels, modalities, tables (no model code)
    train: str  # "module:function(argv)" of ``python -m mbm.train --scenario <name>``
    evaluate: str  # "module:function(argv)" of ``python -m mbm.evaluate --scenario <name>``
    tab: str  # "module:function()" building the tab; returns None or a chain of page-load events
    predictor: str | None  # "module:Class" with ``from_checkpoint()``, which the tab asks (mbm.ui.models)

    def part(self, which: str) -> Any:
        """The object named by the field ``which`` (``"train"``, ``"evaluate"``, ``"tab"``), imported now."""
        module, _, attribute = getattr(self, which).partition(":")
        return getattr(importlib.import_module(module), attribute)


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
             predictor=None),  # the tab loads the search space and the chosen collection's index itself
)}
