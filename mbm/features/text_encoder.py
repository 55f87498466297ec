"""The voice-control text encoder backed by the pretrained all-MiniLM-L6-v2.

Typed words -> MiniLM's WordPiece ids (:func:`mbm.preprocess.encode_text`) -> the frozen 6-layer MiniLM
(:mod:`mbm.features.minilm`: weights from their package, checked by sha256, not stored in the checkpoint)
-> each word piece's vector in context (384) -> a trained linear map -> tokens (B, L, D), one per piece.

Why: the word-id GRU it replaces knew only the 120 words of the training phrasings, so a visitor's own
wording ("the telly", "the radiator", "nope") was dropped as unknown. MiniLM has read a great deal of
English; the fusion and heads stay as trained and only the map is fitted (``mbm.scenarios.voice_control.
text_stage``). Measured in docs/voice_control.md ("Typed text read by MiniLM").
"""

from __future__ import annotations

import torch
from torch import nn

from mbm.config import EncoderConfig
from mbm.encoders import Tokens

MINILM_DIM = 384
MINILM_VOCAB = 30522  # word-piece ids; 0 is padding
FIRST_WORD_PIECE = 999  # ids below are [PAD], [unused*], [UNK], [CLS], [SEP], [MASK]
UNKNOWN_PIECE = 100  # [UNK]: a word hidden (the occlusion maps), or text of unreadable words


class PretrainedTextEncoder(nn.Module):
    """(B, L) MiniLM word-piece ids (0 = padding, no [CLS]/[SEP]) -> Tokens (B, L, D)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.proj = nn.Linear(MINILM_DIM, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self._last: tuple | None = None  # (ids, vectors): one request runs the model several times on its text

    def pieces_in_context(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> MiniLM's vectors (B, L, 384); for one text, reused when the same ids come again."""
        from mbm.features.minilm import text_encoder  # loaded once per process, shared with search

        last = self._last
        if last is not None and last[0].shape == ids.shape and torch.equal(last[0], ids):
            return last[1]
        with torch.no_grad(), torch.autocast("cpu", enabled=False):  # MiniLM is frozen, run as served (float32)
            x = text_encoder().token_vectors(ids.long().cpu())
        self._last = (ids.detach().clone(), x) if ids.shape[0] == 1 else None
        return x

    def forward(self, ids: torch.Tensor) -> Tokens:
        x = self.pieces_in_context(ids).to(self.proj.weight.dtype)  # (B, L, 384)
        return Tokens(self.drop(self.proj(x)), ids != 0)  # (B, L, D)
