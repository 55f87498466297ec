"""Evaluate a tiny checkpoint on fresh random data: ``python -m mbm.evaluate --scenario tiny --checkpoint PATH``."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mbm.checkpoint import load_checkpoint
from mbm.cli import print_result
from tests.tiny_scenario.model import build_model
from tests.tiny_scenario.spec import INPUTS, make_data


@torch.no_grad()
def main(argv: list[str]) -> dict:
    """Accuracy with both inputs and with each alone; printed (``--json``: one object) and returned."""
    ap = argparse.ArgumentParser(prog="python -m mbm.evaluate --scenario tiny")
    ap.add_argument("--scenario", default="tiny", choices=["tiny"])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    model = load_checkpoint(args.checkpoint, "tiny", build=build_model).build_model(build_model)
    x, y = make_data(args.n, seed=12345)  # never a training seed

    def accuracy(given: tuple[str, ...]) -> float:
        return float((model({m: x[m] for m in given}).logits["label"].argmax(-1) == y).float().mean())

    result = {"accuracy": accuracy(INPUTS), **{f"accuracy_{m}_only": accuracy((m,)) for m in INPUTS}, "n": args.n}
    print_result(result, args.json)
    return result
