"""The fine-tuned top of EfficientNet-Lite0 that reads devices, and how it is trained.

EfficientNet-Lite0 (:mod:`mbm.features.efficientnet`) is split in two:

- the **trunk**, the stem and stages 0 .. 5, stays frozen: it comes from the weight package (checked
  by sha256) and is never in a checkpoint;
- the **top**, stage 6, ``conv_head`` + BatchNorm and the classifier, starts from the ImageNet
  weights and is fine-tuned on our photos; its weights are in the checkpoint (~9 MB).

The device logits are read from the top's 1000 ImageNet scores: device d gets the log-sum-exp of
the scores of its ImageNet classes (:data:`mbm.features.imagenet_devices.IMAGENET_CLASSES`) plus
a bias. Before training that is exactly the zero-shot prior (normalised over the devices), so the
fine-tuning starts from what a million ImageNet photos taught and only adapts it (hinged doors,
64 px photos). While it trains, a distillation term keeps the top's ImageNet answers close to the
original network's on the same photos ("learning without forgetting", Li and Hoiem 2016), so the
network does not turn into a detector of our datasets. BatchNorm keeps its ImageNet statistics
(the top is trained in eval mode).
"""

from __future__ import annotations

import copy
import math
import random
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn

from mbm.features import efficientnet
from mbm.features.imagenet_devices import DEVICES, IMAGENET_CLASSES


def trunk(pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) [-0.5, 0.5] pixels -> the frozen trunk's output (B, 192, S/32, S/32)."""
    with torch.no_grad():
        net = efficientnet.pretrained_efficientnet()
        return efficientnet.trunk(net, efficientnet.to_input(pixels).contiguous(memory_format=torch.channels_last))


class DeviceTop(nn.Module):
    """Trunk output (B, 192, g, g) -> feature grid (B, 1280, g, g), ImageNet logits (B, 1000) and device
    logits (B, 7) (per cell: :meth:`cell_device_logits`); starts as the ImageNet network with the zero-shot device read-out, its
    weights fixed until :func:`fine_tune` trains them."""

    def __init__(self, net: nn.Module | None = None):
        super().__init__()
        net = efficientnet.pretrained_efficientnet() if net is None else net
        self.blocks = copy.deepcopy(net.blocks[efficientnet.TOP_STAGE:])
        self.conv_head = copy.deepcopy(net.conv_head)
        self.bn2 = copy.deepcopy(net.bn2)
        self.classifier = copy.deepcopy(net.classifier)
        self.requires_grad_(False)
        self.device_bias = nn.Parameter(torch.zeros(len(DEVICES)), requires_grad=False)  # trained by fine_tune
        pairs = [(c, d) for d, device in enumerate(DEVICES) for c in IMAGENET_CLASSES[device]]  # (class, device)
        self.register_buffer("class_index", torch.tensor([c for c, _ in pairs]), persistent=False)
        self.register_buffer("class_device", torch.tensor([d for _, d in pairs]), persistent=False)

    def grid(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv_head(self.blocks(x)))  # (B, 1280, g, g)

    def device_logits(self, scores: torch.Tensor, picked: bool = False) -> torch.Tensor:
        """ImageNet scores (B, 1000, ...) -> device logits (B, 7, ...): log-sum-exp over each device's classes.
        ``picked``: the scores are already those of the mapped classes only (B, K, ...)."""
        picked_scores = scores if picked else scores[:, self.class_index]  # (B, K, ...)
        out = torch.stack([picked_scores[:, self.class_device == d].logsumexp(1) for d in range(len(DEVICES))], 1)
        return out + self.device_bias.view(1, -1, *([1] * (scores.dim() - 2)))

    def cell_device_logits(self, grid: torch.Tensor) -> torch.Tensor:
        """Feature grid (B, 1280, g, g) -> device logits of each cell (B, 7, g, g). The classifier is
        linear, so the cells' scores average to the photo's; only the mapped classes are scored."""
        weight, bias = self.classifier.weight[self.class_index], self.classifier.bias[self.class_index]
        scores = torch.einsum("bchw,kc->bkhw", grid, weight) + bias[:, None, None]  # (B, K, g, g)
        return self.device_logits(scores, picked=True)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        grid = self.grid(x)
        logits = self.classifier(grid.mean((2, 3)))  # (B, 1000)
        return {"grid": grid, "logits": logits, "device": self.device_logits(logits)}


def imagenet_top() -> DeviceTop:
    """The untrained top (the ImageNet network itself), frozen: the teacher of the distillation."""
    return DeviceTop().requires_grad_(False).eval()


def fine_tune(top: DeviceTop, views: torch.Tensor, teacher: torch.Tensor, devices: torch.Tensor, steps: int,
              lr: float, batch_size: int, distill: float, seed: int, keep: torch.Tensor | None = None,
              progress=None) -> DeviceTop:
    """Fine-tune ``top`` on cached trunk outputs.

    views (V, N, 192, g, g) trunk outputs of V versions of N photos; teacher (V, N, 1000) the ImageNet
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
    top.eval()  # BatchNorm keeps ImageNet's statistics
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
