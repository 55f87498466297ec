"""The predictors behind the tabs, each loaded once, on first use, from the shipped checkpoints.

The registry (``mbm.scenarios.SCENARIOS``) names each scenario's predictor; ``import app`` builds the page
(which reads labels from the checkpoints, so it loads them then); importing a tab module alone loads nothing.
"""

from __future__ import annotations

from functools import cache

from mbm.scenarios import SCENARIOS


@cache
def predictor(scenario: str):
    """The scenario's predictor (``Scenario.predictor``), from its checkpoint (``Scenario.checkpoint``)."""
    entry = SCENARIOS[scenario]
    return entry.part("predictor").from_checkpoint(entry.checkpoint)
