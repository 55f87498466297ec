"""The tiny scenario's predictor: a checkpoint in, plain-Python answers out."""

from __future__ import annotations

from pathlib import Path

import torch

from mbm.checkpoint import load_checkpoint
from mbm.errors import InputError
from tests.tiny_scenario.model import build_model
from tests.tiny_scenario.spec import INPUTS, WIDTH


class TinyPredictor:
    """``predict(image=[8 numbers], text=[8 numbers])``: the label, its probabilities, each input's weight."""

    def __init__(self, ckpt):
        self.labels = ckpt.labels["label"]
        self.model = ckpt.build_model(build_model)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> TinyPredictor:
        """Load a checkpoint written by the tiny scenario's train."""
        return cls(load_checkpoint(path, "tiny", build=build_model))

    @torch.no_grad()
    def predict(self, image=None, text=None) -> dict:
        """Either input or both; an :class:`InputError` for none or for the wrong count of numbers."""
        given = {m: v for m, v in zip(INPUTS, (image, text), strict=True) if v is not None}
        if not given:
            raise InputError("give the image numbers, the text numbers or both")
        if any(len(v) != WIDTH for v in given.values()):
            raise InputError(f"each input is {WIDTH} numbers")
        out = self.model({m: torch.tensor([list(v)], dtype=torch.float32) for m, v in given.items()})
        probs = out.logits["label"].softmax(-1)[0]
        weights = dict(zip(self.model.modalities, out.modality_weights[0].tolist(), strict=True))
        return {"label": self.labels[int(probs.argmax())], "probs": dict(zip(self.labels, probs.tolist(), strict=True)),
                "modality_weights": {m: weights[m] for m in INPUTS}}
