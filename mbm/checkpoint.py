"""Save and load checkpoints that carry everything the app needs: one format for every scenario.

A checkpoint is a plain dict loaded with ``torch.load(weights_only=True)``:
the model config (which includes the preprocessing settings; every key required; None for
a network that is not built from a :class:`ModelConfig`), the label names of every head, the text
vocabulary, scenario extras (e.g. the action table), training metrics and the weights. Nothing about
a scenario is hard-coded in the app. Which model class the weights belong to is the caller's
choice (``build``): ``MultimodalModel`` for voice control, ``PortraitModel`` for portraits, the
search heads for retrieval.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mbm.config import ModelConfig
from mbm.model import MultimodalModel
from mbm.storage import atomic_write

FORMAT = "mbm-checkpoint/1"


@dataclass
class Checkpoint:
    scenario: str
    config: ModelConfig | None  # None: the network is not built from a ModelConfig (retrieval's heads)
    labels: dict[str, list[str]]  # head name -> class names
    vocab: list[str]
    extra: dict = field(default_factory=dict)  # scenario-specific data (action table, gallery...)
    metrics: dict = field(default_factory=dict)  # measured at the end of training
    state_dict: dict | None = None

    def build_model(self, build: Callable[[ModelConfig], nn.Module] = MultimodalModel) -> nn.Module:
        """``build(config)`` in eval mode with these weights (strict: every weight must fit)."""
        model = build(self.config)
        if self.state_dict is not None:
            model.load_state_dict(self.state_dict)
        return model.eval()


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a file."""
    config = None if ckpt.config is None else ckpt.config.to_dict()
    payload = {"format": FORMAT, "scenario": ckpt.scenario, "config": config,
               "labels": ckpt.labels, "vocab": ckpt.vocab, "extra": ckpt.extra, "metrics": ckpt.metrics,
               "state_dict": {k: v.detach().cpu() for k, v in (ckpt.state_dict or {}).items()}}
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, scenario: str | None = None,
                    build: Callable[[ModelConfig], nn.Module] = MultimodalModel) -> Checkpoint:
    """Load a checkpoint safely (``weights_only=True``); ``build`` is the model class checked against it.

    Raises:
        ValueError: the file is missing, truncated, tampered with, or for another scenario;
            the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, pickle with code in it, ...: all unusable
        raise ValueError(f"cannot load checkpoint {path}: the file is damaged or not a safe mbm "
                         f"checkpoint ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mbm checkpoint (expected format {FORMAT})")
    if scenario is not None and payload.get("scenario") != scenario:
        raise ValueError(f"{path} is a '{payload.get('scenario')}' checkpoint, not '{scenario}'")
    try:
        config = None if payload["config"] is None else ModelConfig.from_dict(payload["config"])
        ckpt = Checkpoint(scenario=payload["scenario"], config=config,
                          labels={k: list(v) for k, v in payload["labels"].items()}, vocab=list(payload["vocab"]),
                          extra=payload["extra"], metrics=payload["metrics"], state_dict=payload["state_dict"])
        ckpt.build_model(build)  # shapes must match the config
    except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as e:  # tampered fields
        raise ValueError(f"checkpoint {path} is inconsistent: {(str(e).splitlines() or [''])[0][:200]}") from None
    return ckpt


def fingerprint(path: str | Path) -> dict[str, str]:
    """What a report names a checkpoint by: its file name and the first 12 hex digits of its sha256
    (hashed once per version of the file, not once per report)."""
    path = Path(path)
    stat = path.stat()
    return {"checkpoint": path.name, "sha256": _sha256_prefix(str(path), stat.st_mtime_ns, stat.st_size)}


@functools.lru_cache(maxsize=8)
def _sha256_prefix(path: str, mtime_ns: int, size: int) -> str:
    """The file's sha256, first 12 hex digits; ``mtime_ns`` and ``size`` make a rewritten file a new key."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
