"""The voice-control image encoder backed by the pretrained EfficientNet-Lite0.

Photo (3, S, S) -> frozen trunk (stem .. stage 5) -> fine-tuned top (stage 6, head, classifier;
:mod:`mbm.features.device_top`) -> per region and per photo:

- per cell: the top's device log-probabilities of that cell (7),
- per photo: the top's device log-probabilities (7) and the presence logit (1;
  :class:`PresenceHead`, "is there a device at all?"), repeated on every cell,

15 numbers a cell -> a small MLP -> tokens (B, g*g, D) + positions. The cells are the top's grid
(S / 32 a side: 6 x 6 at 192 px), averaged down to at most ``TOKEN_GRID`` x ``TOKEN_GRID``. The
fusion sees only this device evidence, not the raw features, so it cannot learn which dataset a photo came from beyond what the device top (anchored on ImageNet) lets
through. Region maps keep working: one token per cell of the g x g token grid, row-major (the
image map the app draws ranks coarser regions, :mod:`mbm.scenarios.voice_control.maps`).

The trunk's weights are not in the checkpoint (they come from the weight package, checked by
sha256, see :mod:`mbm.features.efficientnet`); the top, the presence head and the token MLP are.

The encoder's input is the usual [-0.5, 0.5] min-max pixels, or, in training, the 15-channel score
maps cached from them (``forward`` tells them apart by the channel count).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mbm.config import EncoderConfig, ImageConfig
from mbm.encoders import Tokens
from mbm.features.device_top import DeviceTop, trunk
from mbm.features.efficientnet import BACKBONE, FEATURE_CHANNELS, STRIDE
from mbm.features.imagenet_devices import zero_shot
from mbm.features.presence import PresenceHead

SCORE_CHANNELS = 15  # 7 cell device log-probs + 7 photo device log-probs + 1 presence logit
LOG_SCALE = 0.2  # log-probabilities are scaled by this before the MLP
TOKEN_GRID = 7  # image tokens: a 7 x 7 grid of regions


class BackboneOutputs(dict):
    """pooled (B, 1280) the feature grid's average, logits (B, 1000) ImageNet scores, device (B, 7) device logits,
    cell_device (B, 7, g, g) device logits per cell."""


def top_outputs(top: DeviceTop, trunk_out: torch.Tensor) -> BackboneOutputs:
    """The top's outputs on trunk outputs (B, 192, g, g), no gradient."""
    with torch.no_grad():
        out = top(trunk_out.float())
        return BackboneOutputs(pooled=out["grid"].mean((2, 3)), logits=out["logits"], device=out["device"],
                               cell_device=top.cell_device_logits(out["grid"]))


class PretrainedImageEncoder(nn.Module):
    """Photo (B, 3, S, S) or cached score maps (B, 15, g, g) -> image tokens (B, g*g, D); ``recognise``
    says what the photo alone shows (the module docstring)."""

    backbone_name = BACKBONE

    def __init__(self, cfg: EncoderConfig, image: ImageConfig):
        super().__init__()
        self.grid = min(TOKEN_GRID, -(-image.size // STRIDE))
        self.top = DeviceTop()
        self.top.requires_grad_(False)  # fine-tuned before the fusion (mbm.scenarios.voice_control.image_cache), then fixed
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
        out = top_outputs(self.top, trunk(pixels))
        self._last = (pixels.detach().clone(), out) if pixels.shape[0] == 1 else None
        return out

    def heads(self, out: BackboneOutputs) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (device log-probs (B, 7), presence logit (B,))."""
        return out["device"].log_softmax(-1), self.presence(out["pooled"], zero_shot(out["logits"]))

    def score_map(self, out: BackboneOutputs) -> torch.Tensor:
        """Backbone outputs -> (B, 15, g, g) device evidence per token cell."""
        with torch.no_grad():
            logp, presence = self.heads(out)
            # (B, 7, G, G) top grid -> (B, 7, g, g) token grid
            cells = F.adaptive_avg_pool2d(out["cell_device"], self.grid).log_softmax(1)
            b, _, g, _ = cells.shape
            return torch.cat([cells * LOG_SCALE,
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
