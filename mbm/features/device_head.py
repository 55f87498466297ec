"""The image's device head on frozen SqueezeNet features, and the "no device here" detector.

Device logits = prior x log(zero-shot ImageNet device mass) + a linear layer on the standardised
pooled fire9 features. The zero-shot part (:mod:`mbm.features.imagenet_devices`) is fixed: it is
the million ImageNet photos' knowledge, and it knows nothing of our datasets' sources. The linear
part is fitted on our photos with every (class, source) pair weighted equally (source-balanced) and
an L2 penalty that keeps it a correction of the prior instead of a source detector.

Presence ("is there a device at all?") is a logistic regression on the same features plus the
log ImageNet mass on device classes, fitted on device photos against faces, plain colours, noise
and colour blobs; its threshold is chosen on the training photos (see ``fit_presence``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N_DEVICES = 7
EPS = 1e-6


def features(pooled: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """(N, 512) pooled fire9 + (N, 1000) ImageNet logits -> the heads' input (N, 512)."""
    return pooled


def balanced_weights(devices: torch.Tensor, sources: list[str]) -> torch.Tensor:
    """(N,) weights giving every class the same total, split equally over the class's sources."""
    w = torch.zeros(len(devices))
    src = np.asarray(sources)
    for d in devices.unique().tolist():
        in_class = (devices == d).numpy()
        names = sorted(set(src[in_class]))
        for s in names:
            sel = torch.from_numpy(in_class & (src == s))
            w[sel] = 1.0 / (len(names) * int(sel.sum()))
    return w / w.sum() * len(w)


class DeviceHead(nn.Module):
    """(N, F) features + (N, 7) zero-shot device mass -> (N, 7) device logits."""

    def __init__(self, n_features: int = 512, prior: float = 1.0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("prior", torch.tensor(float(prior)))
        self.linear = nn.Linear(n_features, N_DEVICES)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, feats: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        return self.prior * zs.clamp_min(EPS).log() + self.linear((feats - self.mean) / self.std)


class PresenceHead(nn.Module):
    """(N, F) features + (N, 7) zero-shot mass -> (N,) logit of "a device is in the photo"."""

    def __init__(self, n_features: int = 512):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("threshold", torch.tensor(0.5))  # probability below which: no device
        self.linear = nn.Linear(n_features + 1, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, feats: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        mass = zs.sum(-1, keepdim=True).clamp_min(EPS).log()  # (N, 1) ImageNet mass on device classes
        return self.linear(torch.cat([(feats - self.mean) / self.std, mass], -1))[:, 0]


def _standardise(module, feats: torch.Tensor) -> None:
    module.mean.copy_(feats.mean(0))
    module.std.copy_(feats.std(0).clamp_min(1e-3))



def _train_linear(head, loss_of, steps: int, lr: float, l2: float) -> None:
    """Full-batch Adam on ``head.linear``: ``loss_of(head)`` + l2 x the squared weights."""
    opt = torch.optim.Adam(head.linear.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = loss_of(head) + l2 * head.linear.weight.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()

def fit_device_head(feats: torch.Tensor, zs: torch.Tensor, devices: torch.Tensor, sources: list[str],
                    l2: float = 0.1, prior: float = 1.0, steps: int = 300, lr: float = 0.05,
                    seed: int = 0) -> DeviceHead:
    """Fit the linear correction of the zero-shot prior, source-balanced (full batch, Adam)."""
    torch.manual_seed(seed)
    head = DeviceHead(feats.shape[1], prior)
    _standardise(head, feats)
    w = balanced_weights(devices, sources)
    _train_linear(head, lambda h: (F.cross_entropy(h(feats, zs), devices, reduction="none") * w).mean(),
                  steps, lr, l2)
    return head.eval()


def fit_presence(pos_feats: torch.Tensor, pos_zs: torch.Tensor, pos_weights: torch.Tensor,
                 neg_feats: torch.Tensor, neg_zs: torch.Tensor, l2: float = 0.01, steps: int = 300,
                 lr: float = 0.05, max_false_rejection: float = 0.02) -> PresenceHead:
    """Device photos (positives, weighted) against non-device images; the threshold is the highest
    probability that still accepts all but ``max_false_rejection`` of the (weighted) positives."""
    head = PresenceHead(pos_feats.shape[1])
    _standardise(head, torch.cat([pos_feats, neg_feats]))
    x = torch.cat([pos_feats, neg_feats])
    z = torch.cat([pos_zs, neg_zs])
    y = torch.cat([torch.ones(len(pos_feats)), torch.zeros(len(neg_feats))])
    # each side weighs half
    w = torch.cat([pos_weights / pos_weights.sum(), torch.full((len(neg_feats),), 1.0 / len(neg_feats))]) * len(y) / 2
    _train_linear(head, lambda h: (F.binary_cross_entropy_with_logits(h(x, z), y, reduction="none") * w).mean(),
                  steps, lr, l2)
    head.eval()
    with torch.no_grad():
        p = head(pos_feats, pos_zs).sigmoid()
    order = p.argsort()
    cum = (pos_weights[order] / pos_weights.sum()).cumsum(0)
    k = int(torch.searchsorted(cum, torch.tensor(max_false_rejection)))
    head.threshold.fill_(min(0.5, float(p[order][min(k, len(p) - 1)])))
    return head


def logit(p: float) -> float:
    return math.log(p / (1 - p))
