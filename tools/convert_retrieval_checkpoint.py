"""Re-save a retrieval checkpoint of the older layout in the common format, tensor for tensor.

The older layout was one flat dict (``{"format": "mbm-retrieval-5", "heads": ..., "pca_mean": ...}``);
the common format (:mod:`mbm.checkpoint`) keeps the heads as the weights, the training notes as the
metrics and everything else, unchanged, as the extras. Both are read with ``weights_only=True``.

    python -m tools.convert_retrieval_checkpoint OLD.pt [--out NEW.pt]   # default: OLD.pt in place
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mbm.checkpoint import Checkpoint, save_checkpoint


def convert(old: Path, out: Path) -> Checkpoint:
    """Read ``old`` (older layout) and write the same tensors to ``out`` in the common format.

    Raises:
        ValueError: ``old`` is not a retrieval checkpoint of the older layout.
    """
    raw = torch.load(old, map_location="cpu", weights_only=True)
    if not (isinstance(raw, dict) and str(raw.get("format", "")).startswith("mbm-retrieval-")
            and isinstance(raw.get("heads"), dict)):
        raise ValueError(f"{old} is not a retrieval checkpoint of the older layout (a flat mbm-retrieval-N dict)")
    heads = raw.pop("heads")
    metrics = {"trained_on": raw.pop("trained_on")} if "trained_on" in raw else {}
    ckpt = Checkpoint(scenario="retrieval", config=None, labels={}, vocab=[], extra=raw, metrics=metrics,
                      state_dict=heads)
    save_checkpoint(ckpt, out)
    return ckpt


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.convert_retrieval_checkpoint OLD [--out NEW]``."""
    ap = argparse.ArgumentParser(prog="python -m tools.convert_retrieval_checkpoint", description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out", type=Path, help="where to write (default: over CHECKPOINT)")
    args = ap.parse_args(argv)
    try:
        convert(args.checkpoint, args.out or args.checkpoint)
    except ValueError as e:
        ap.error(str(e))
    print(f"wrote {args.out or args.checkpoint} in the common checkpoint format")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
