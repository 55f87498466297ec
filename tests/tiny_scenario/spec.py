"""The tiny scenario's meaning: its labels, its inputs and the rule that makes its random data."""

from __future__ import annotations

import torch

LABELS = ("negative", "positive")
INPUTS = ("image", "text")  # model modalities: 8 numbers each
WIDTH = 8


def make_data(n: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``n`` random samples: each input (n, 8) standard normal; label 1 where image[0] + text[0] > 0."""
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(n, WIDTH, generator=g) for m in INPUTS}
    return x, (x["image"][:, 0] + x["text"][:, 0] > 0).long()
