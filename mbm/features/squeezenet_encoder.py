"""The voice-control image encoder backed by the pretrained SqueezeNet (issue #17).

Photo (3, S, S) -> frozen SqueezeNet -> fire9 grid (512, g, g) -> per region and per photo:

- per cell: the zero-shot ImageNet device mass of that cell (7, log),
- per photo: the device head's log-probabilities (7; :class:`DeviceHead`) and the presence logit
  (1; :class:`PresenceHead`, "is there a device at all?"), repeated on every cell,

15 numbers a cell -> a small MLP -> tokens (B, g*g, D) + positions. The fusion sees only this
device evidence, not the raw features, so it cannot learn which dataset a photo came from beyond
what the (source-balanced, prior-anchored) device head lets through. Region maps keep working: one
token per cell of the g x g grid, row-major.

The backbone's weights are not in the checkpoint (they come from the ``ndf`` package, checked by
sha256, see :mod:`mbm.features.squeezenet`); the heads and the token MLP are.

The encoder's input is the usual [-0.5, 0.5] min-max pixels (mapped back to 0..255 for SqueezeNet),
or, in training, the 15-channel score maps cached from them (``forward`` tells them apart by the
channel count).
"""

from __future__ import annotations

import torch
from torch import nn

from mbm.config import EncoderConfig, ImageConfig
from mbm.encoders import Tokens
from mbm.features.device_head import DeviceHead, PresenceHead
from mbm.features.imagenet_devices import zero_shot
from mbm.features.squeezenet import BACKBONE, FEATURE_CHANNELS, SqueezeNet, pretrained_squeezenet

SCORE_CHANNELS = 15  # 7 cell zero-shot + 7 photo device log-probs + 1 presence logit
LOG_SCALE = 0.2  # log-probabilities are scaled by this before the MLP


class BackboneOutputs(dict):
    """pooled (B, 512), logits (B, 1000), cell_zs (B, 7, g, g)."""


def backbone_outputs(pixels: torch.Tensor) -> BackboneOutputs:
    """(B, 3, S, S) [-0.5, 0.5] pixels -> frozen SqueezeNet outputs (no gradient)."""
    net = pretrained_squeezenet()
    with torch.no_grad():
        x = (pixels.float() + 0.5) * 255.0
        grid = net.features(x)  # (B, 512, g, g)
        cmap = net.class_map(grid)  # (B, 1000, g, g)
        return BackboneOutputs(pooled=grid.mean((2, 3)), logits=cmap.mean((2, 3)), cell_zs=zero_shot(cmap, 1))


class SqueezeNetImageEncoder(nn.Module):
    backbone_name = BACKBONE

    def __init__(self, cfg: EncoderConfig, image: ImageConfig):
        super().__init__()
        self.grid = SqueezeNet.grid_size(image.size)
        self.device_head = DeviceHead(FEATURE_CHANNELS)
        self.presence = PresenceHead(FEATURE_CHANNELS)
        self.mlp = nn.Sequential(nn.Linear(SCORE_CHANNELS, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))
        self.pos = nn.Parameter(torch.zeros(1, self.grid * self.grid, cfg.dim))
        nn.init.normal_(self.pos, std=0.02)
        self._last: tuple | None = None  # (key, outputs): the predictor's presence check and forward share one pass

    def backbone(self, pixels: torch.Tensor) -> BackboneOutputs:
        """Backbone outputs; for one photo, reused when the same pixels come again (compared in full)."""
        last = self._last
        if last is not None and last[0].shape == pixels.shape and torch.equal(last[0], pixels):
            return last[1]
        out = backbone_outputs(pixels)
        self._last = (pixels.detach().clone(), out) if pixels.shape[0] == 1 else None
        return out

    def heads(self, out: BackboneOutputs) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (device log-probs (B, 7), presence logit (B,))."""
        zs = zero_shot(out["logits"])
        return (self.device_head(out["pooled"], zs).log_softmax(-1), self.presence(out["pooled"], zs))

    def score_map(self, out: BackboneOutputs) -> torch.Tensor:
        """Backbone outputs -> (B, 15, g, g) device evidence per cell."""
        with torch.no_grad():
            logp, presence = self.heads(out)
            g = out["cell_zs"].shape[-1]
            b = logp.shape[0]
            return torch.cat([out["cell_zs"].clamp_min(1e-6).log() * LOG_SCALE,
                              (logp * LOG_SCALE)[:, :, None, None].expand(b, -1, g, g),
                              presence[:, None, None, None].expand(b, 1, g, g).clamp(-10, 10) * LOG_SCALE], 1)

    @torch.no_grad()
    def recognise(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the photo alone says: device probabilities (B, 7), presence probability (B,),
        accepted (B,) bool (False: "no device recognised")."""
        logp, presence = self.heads(self.backbone(pixels))
        p = presence.sigmoid()
        return {"device_probs": logp.exp(), "presence": p, "accepted": p >= self.presence.threshold}

    def forward(self, x: torch.Tensor) -> Tokens:
        maps = x if x.shape[1] == SCORE_CHANNELS else self.score_map(self.backbone(x))  # (B, 15, g, g)
        tokens = self.mlp(maps.float().flatten(2).transpose(1, 2)) + self.pos  # (B, g*g, D)
        return Tokens(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device))
