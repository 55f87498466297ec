"""Train the tiny scenario: ``python -m mbm.train --scenario tiny --out PATH [--steps N]``."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from mbm.checkpoint import Checkpoint, save_checkpoint
from mbm.cli import read_recipe
from tests.tiny_scenario.model import build_model, model_config
from tests.tiny_scenario.spec import INPUTS, LABELS, make_data


def main(argv: list[str]) -> Checkpoint:
    """Train with the recipe (options override it), write the checkpoint to ``--out`` and return it."""
    ap = argparse.ArgumentParser(prog="python -m mbm.train --scenario tiny")
    ap.add_argument("--scenario", default="tiny", choices=["tiny"])
    ap.add_argument("--out", type=Path, required=True)
    for name, kind in (("steps", int), ("lr", float), ("batch_size", int), ("seed", int)):
        ap.add_argument(f"--{name.replace('_', '-')}", type=kind)
    read_recipe(ap, Path(__file__).with_name("recipe.json"))
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    cfg = model_config()
    model = build_model(cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    for step in range(args.steps):
        x, y = make_data(args.batch_size, seed=args.seed * 100_000 + step)
        keep = torch.rand(args.batch_size, len(INPUTS)) < 0.8  # each input kept 80 %, at least one
        keep[~keep.any(1), 0] = True
        loss = F.cross_entropy(model(x, {m: keep[:, i] for i, m in enumerate(INPUTS)}).logits["label"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ckpt = Checkpoint(scenario="tiny", config=cfg, labels={"label": list(LABELS)}, vocab=[],
                      metrics={"final_loss": loss.item(), "steps": args.steps}, state_dict=model.state_dict())
    save_checkpoint(ckpt, args.out)
    return ckpt
