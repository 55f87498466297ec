"""The predictors behind the tabs, each loaded once, on first use, from the shipped checkpoints.

``import app`` builds the page (which reads labels from the checkpoints, so it loads them then);
importing a tab module alone loads nothing.
"""

from __future__ import annotations

from functools import cache

from mbm.scenarios.portrait.predictor import PortraitPredictor
from mbm.scenarios.voice_control.predictor import VoiceControlPredictor


@cache
def voice_control() -> VoiceControlPredictor:
    """The voice-control predictor (``checkpoints/voice_control.pt``)."""
    return VoiceControlPredictor.from_checkpoint()


@cache
def portrait() -> PortraitPredictor:
    """The portrait predictor (``checkpoints/portrait.pt``; gallery in ``$MBM_GALLERY_DIR``)."""
    return PortraitPredictor.from_checkpoint()
