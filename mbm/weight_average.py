"""Stochastic weight averaging: the mean of the weights over the last training steps.

A model trained on few speakers ends wherever its last batches left it; the mean of
its weights over the last part of the run sits nearer the middle of that region and
varies less between seeds. BatchNorm statistics belong to one set of weights, so
after averaging they are measured again on training batches
(:func:`recalibrate_batchnorm`), as ``torch.optim.swa_utils.update_bn`` does.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class WeightAverage:
    """Running mean of a model's parameters over the steps passed to :meth:`update`."""

    def __init__(self, model: nn.Module):
        self.mean = {name: p.detach().clone() for name, p in model.named_parameters()}
        self.count = 1

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current parameters into the mean."""
        self.count += 1
        for name, p in model.named_parameters():
            self.mean[name] += (p.detach() - self.mean[name]) / self.count

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the mean into ``model`` (its buffers, e.g. BatchNorm statistics, are left as they are)."""
        for name, p in model.named_parameters():
            p.copy_(self.mean[name])


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> int:
    """Re-measure every BatchNorm's running mean and variance on ``batches`` (model inputs).

    The statistics become the plain average over the batches (momentum ``None``); the
    model is left in eval mode. Returns the number of BatchNorm layers reset (0: nothing
    to do, and ``batches`` is not consumed).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        model.eval()
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    for inputs in batches:
        model(inputs)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
    return len(norms)
