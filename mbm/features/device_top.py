"""The fine-tuned top of SqueezeNet that reads devices, and how it is trained (issue #17).

SqueezeNet v1.1 is split in two:

- the **trunk**, conv1 .. fire5 and its max-pool, stays frozen: it comes from the ``ndf`` package
  (:mod:`mbm.features.squeezenet`, checked by sha256) and is never in a checkpoint;
- the **top**, fire6 .. fire9 and conv10, starts from the ImageNet weights and is fine-tuned on our
  photos; its weights are in the checkpoint (~4.5 MB).

The device logits are read from the top's 1000 ImageNet scores: device d gets the log-sum-exp of
the scores of its ImageNet classes (:data:`mbm.features.imagenet_devices.IMAGENET_CLASSES`) plus
a bias. Before training that is exactly the zero-shot prior (normalised over the devices), so the
fine-tuning starts from what a million ImageNet photos taught and only adapts it (hinged doors,
64 px photos). While it trains, a distillation term keeps the top's ImageNet answers close to the
original network's on the same photos ("learning without forgetting", Li and Hoiem 2016), so the
network does not turn into a detector of our datasets.
"""

from __future__ import annotations

import copy
import math
import random
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn

from mbm.features.imagenet_devices import DEVICES, IMAGENET_CLASSES
from mbm.features.squeezenet import TOP_BLOCKS, SqueezeNet, pretrained_squeezenet


def trunk(pixels_255: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) RGB 0..255 -> the frozen trunk's output (B, 256, g, g), g the fire9 grid's side."""
    with torch.no_grad():
        return pretrained_squeezenet().trunk(pixels_255)


class DeviceTop(nn.Module):
    """Trunk output (B, 256, g, g) -> fire9 grid (B, 512, g, g), ImageNet score map (B, 1000, g, g)
    and device logits (B, 7); starts as the ImageNet network with the zero-shot device read-out, its
    weights fixed until :func:`fine_tune` trains them."""

    def __init__(self, net: SqueezeNet | None = None):
        super().__init__()
        net = pretrained_squeezenet() if net is None else net
        self.fires = nn.ModuleDict({name: copy.deepcopy(net.fires[name]) for name in TOP_BLOCKS})
        self.conv10 = copy.deepcopy(net.conv10)
        self.device_bias = nn.Parameter(torch.zeros(len(DEVICES)), requires_grad=False)  # trained by fine_tune
        groups = [list(IMAGENET_CLASSES[d]) for d in DEVICES]
        self.register_buffer("class_index", torch.tensor(sum(groups, [])), persistent=False)
        self.register_buffer("class_device", torch.tensor(sum(([d] * len(g) for d, g in enumerate(groups)), [])),
                             persistent=False)

    def grid(self, x: torch.Tensor) -> torch.Tensor:
        for fire in self.fires.values():
            x = fire(x)
        return x  # (B, 512, g, g)

    def device_logits(self, scores: torch.Tensor) -> torch.Tensor:
        """ImageNet scores (B, 1000, ...) -> device logits (B, 7, ...): log-sum-exp over each device's classes."""
        picked = scores[:, self.class_index]  # (B, K, ...) the mapped classes only
        out = torch.stack([picked[:, self.class_device == d].logsumexp(1) for d in range(len(DEVICES))], 1)
        return out + self.device_bias.view(1, -1, *([1] * (scores.dim() - 2)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        grid = self.grid(x)
        cmap = F.relu(self.conv10(grid))  # (B, 1000, g, g)
        logits = cmap.mean((2, 3))  # (B, 1000): SqueezeNet's global average
        return {"grid": grid, "class_map": cmap, "logits": logits, "device": self.device_logits(logits)}


def imagenet_top() -> DeviceTop:
    """The untrained top (the ImageNet network itself), frozen: the teacher of the distillation."""
    return DeviceTop().requires_grad_(False).eval()


def fine_tune(top: DeviceTop, views: torch.Tensor, teacher: torch.Tensor, devices: torch.Tensor, steps: int,
              lr: float, batch_size: int, distill: float, seed: int, keep: torch.Tensor | None = None,
              progress=None) -> DeviceTop:
    """Fine-tune ``top`` on cached trunk outputs.

    views (V, N, 256, g, g) trunk outputs of V versions of N photos; teacher (V, N, 1000) the ImageNet
    network's scores of the same; devices (N,). Batches pick a class uniformly, then one of its photos
    (``keep``: only these photo indices) and one of its versions. Loss: cross-entropy of the devices +
    ``distill`` x KL(teacher || top) over the 1000 ImageNet classes at temperature 2. AdamW, cosine lr.
    """
    rnd = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    keep = torch.ones(len(devices), dtype=torch.bool) if keep is None else keep
    by_class = defaultdict(list)
    for i in torch.nonzero(keep).flatten().tolist():
        by_class[int(devices[i])].append(i)
    classes = sorted(by_class)
    top.requires_grad_(True)
    opt = torch.optim.AdamW(top.parameters(), lr=lr, weight_decay=1e-4)
    top.train()
    with torch.enable_grad():
        for step in progress(range(steps)) if progress else range(steps):
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            ids = torch.tensor([rnd.choice(by_class[rnd.choice(classes)]) for _ in range(batch_size)])
            v = torch.randint(views.shape[0], (batch_size,), generator=g)
            out = top(views[v, ids].float())
            loss = F.cross_entropy(out["device"], devices[ids])
            if distill:
                t = 2.0
                loss = loss + distill * t * t * F.kl_div(F.log_softmax(out["logits"] / t, 1),
                                                         F.log_softmax(teacher[v, ids].float() / t, 1),
                                                         log_target=True, reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return top.requires_grad_(False).eval()
