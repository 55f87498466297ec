"""The "no device here" detector of the pretrained image encoder.

Presence ("is there a device at all?") is a logistic regression on the pooled features of the
fine-tuned top (:mod:`mbm.features.device_top`) plus the log ImageNet mass on device classes,
fitted on device photos against real photos of everyday things, faces, plain colours, noise and
colour blobs (:mod:`mbm.scenarios.voice_control.image_cache`); its threshold is chosen on the training photos
(see ``fit_presence``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6


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
