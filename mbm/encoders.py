"""Per-modality encoders. Each maps its input to tokens ``(B, T, D)`` plus a mask ``(B, T)``.

A CNN for images, recurrent networks (GRU) for
sequences (text tokens, audio frames).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
from torch import nn

from mbm.config import AudioConfig, EncoderConfig, ImageConfig


class Tokens(NamedTuple):
    """An encoder's output."""

    tokens: torch.Tensor  # (B, T, D)
    mask: torch.Tensor  # (B, T) bool, True where a token is real

    def rows(self, index: torch.Tensor) -> Tokens:
        """The samples at ``index`` (K,) -> Tokens (K, T, D) + mask (K, T)."""
        return Tokens(self.tokens[index], self.mask[index])

    def keep_rows(self, keep: torch.Tensor) -> Tokens:
        """The same tokens with every row where ``keep`` (B,) is False marked absent (no real token)."""
        return Tokens(self.tokens, self.mask & keep.bool()[:, None])


def conv_block(c_in: int, c_out: int, pool: tuple[int, int] | int = 2, convs: int = 1) -> nn.Sequential:
    """``convs`` x (Conv3x3 -> BatchNorm -> ReLU), then MaxPool."""
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(pool))


class ImageEncoder(nn.Module):
    """CNN over a (3, S, S) photo; every cell of the last feature map is a token.

    With S=64, a stride-2 stem and two pooling stages the map is 8x8, so T=64 tokens in row-major order.
    """

    def __init__(self, cfg: EncoderConfig, image: ImageConfig):
        super().__init__()
        chans = tuple(cfg.image_channels)
        # A strided stem halves the resolution cheaply, then each stage halves it again.
        self.stem = nn.Sequential(nn.Conv2d(3, chans[0], 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(chans[0]), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(*[conv_block(a, b, convs=cfg.image_convs)
                                      for a, b in itertools.pairwise(chans)])
        self.grid = image.size // 2 ** len(chans)
        self.proj = nn.Conv2d(chans[-1], cfg.dim, 1)
        self.pos = nn.Parameter(torch.zeros(1, self.grid * self.grid, cfg.dim))
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, pixels: torch.Tensor) -> Tokens:
        x = self.proj(self.stages(self.stem(pixels)))  # (B, D, g, g)
        x = x.flatten(2).transpose(1, 2) + self.pos  # (B, g*g, D)
        return Tokens(x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device))


class AudioEncoder(nn.Module):
    """CNN over the log-mel, then a bidirectional GRU over time; one token per time step.

    (B, n_mels, F) -> CNN -> (B, C, n_mels/8, F/4) -> (B, F/4, D) -> GRU -> (B, F/4, D).
    """

    def __init__(self, cfg: EncoderConfig, audio: AudioConfig):
        super().__init__()
        chans = (1,) + tuple(cfg.audio_channels)
        pools = [(2, 2), (2, 2)] + [(2, 1)] * (len(cfg.audio_channels) - 2)  # (freq, time)
        self.cnn = nn.Sequential(*[conv_block(a, b, p) for a, b, p in zip(chans[:-1], chans[1:], pools)])
        freq_out = audio.n_mels // 2 ** len(cfg.audio_channels)
        self.proj = nn.Sequential(nn.Linear(chans[-1] * freq_out, cfg.dim), nn.Dropout(cfg.dropout))
        self.gru = nn.GRU(cfg.dim, cfg.dim // 2, batch_first=True, bidirectional=True)
        self.band_norm = cfg.audio_band_norm

    def forward(self, mel: torch.Tensor) -> Tokens:
        if self.band_norm:
            mel = mel - mel.mean(dim=2, keepdim=True)  # (B, n_mels, F): per-band mean over time removed
        x = self.cnn(mel[:, None])  # (B, C, n_mels', F')
        x = x.flatten(1, 2).transpose(1, 2)  # (B, F', C * n_mels')
        x, _ = self.gru(self.proj(x))  # (B, F', D)
        return Tokens(x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device))


class TextEncoder(nn.Module):
    """Word embeddings, then a bidirectional GRU; one token per word, padding masked."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=0)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.dim, cfg.dim // 2, batch_first=True, bidirectional=True)

    def forward(self, ids: torch.Tensor) -> Tokens:
        mask = ids != 0  # (B, L)
        lengths = mask.sum(1).clamp_min(1).cpu()
        x = self.drop(self.embed(ids))  # (B, L, D)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        x, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        return Tokens(x, mask)  # (B, L, D)
