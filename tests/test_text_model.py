"""The MiniLM text encoder read by tokenizers + safetensors: same numbers as before, tampered files refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mbm.features import minilm as text
from mbm.features.minilm import TextEncoder, TextModelError, model_dir

# Token ids and the first four vector values given by the hand-written WordPiece + safetensors reader that
# this module replaced (and that built the shipped search indexes).
REFERENCE = {
    "Café déjà vu!": ([101, 7668, 2139, 3900, 24728, 999, 102],
                      [-0.03244845, 0.00021667, 0.05305442, 0.04434182]),
    "a pouched animal that hops": ([101, 1037, 21445, 2098, 4111, 2008, 6154, 2015, 102],
                                   [-0.01358923, 0.06226964, -0.01754966, 0.06406768]),
}


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return text.text_encoder()


@pytest.fixture
def copied_model(tmp_path):
    """A copy of the package's two files the encoder reads, to tamper with."""
    for name in ("model.safetensors", "tokenizer.json"):
        shutil.copy(model_dir() / name, tmp_path / name)
    return tmp_path


def test_same_tokens_and_vectors_as_the_reference(encoder):
    for sentence, (ids, head) in REFERENCE.items():
        assert encoder.tokenizer.encode(sentence).ids == ids
        vector = encoder.encode([sentence])[0]
        np.testing.assert_allclose(vector[:4], head, atol=1e-6)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_long_text_is_cut_and_batches_match_single_texts(encoder):
    long = "word " * 400
    assert len(encoder.tokenizer.encode(long).ids) == text.MAX_TOKENS
    texts = ["a lamp", long, "", "the music player"]
    together = encoder.encode(texts)
    one_by_one = np.concatenate([encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_unknown_share(encoder):
    assert encoder.unknown_share("the lamp is on") == 0.0
    assert encoder.unknown_share("数字 音楽 ok") > 0.5


def test_a_changed_byte_is_refused(copied_model):
    data = bytearray((copied_model / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copied_model / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(TextModelError, match="sha256"):
        TextEncoder(copied_model)


def test_a_changed_tokenizer_is_refused(copied_model):
    with (copied_model / "tokenizer.json").open("a") as f:
        f.write(" ")
    with pytest.raises(TextModelError, match="sha256"):
        TextEncoder(copied_model)


def test_missing_file_is_named(copied_model):
    (copied_model / "model.safetensors").unlink()
    with pytest.raises(TextModelError, match="model.safetensors is missing"):
        TextEncoder(copied_model)


def test_without_the_hash_check_malformed_files_are_still_refused(copied_model):
    """The readers' own checks, past the sha256 gate: a broken header, a missing or misshapen tensor."""
    weights = copied_model / "model.safetensors"
    weights.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(TextModelError, match="not a safetensors file"):
        TextEncoder(copied_model, check_sha256=False)

    save_file({"embeddings.word_embeddings.weight": torch.zeros(text.VOCAB, text.DIM)}, str(weights))
    with pytest.raises(TextModelError, match="lack"):
        TextEncoder(copied_model, check_sha256=False)

    wrong = {"embeddings.word_embeddings.weight": torch.zeros(text.VOCAB, text.DIM),
             "embeddings.position_embeddings.weight": torch.zeros(3, text.DIM)}
    save_file(wrong, str(weights))
    with pytest.raises(TextModelError, match="position_embeddings"):
        TextEncoder(copied_model, check_sha256=False)

    small_table = {"embeddings.word_embeddings.weight": torch.zeros(10, text.DIM)}
    save_file(small_table, str(weights))
    with pytest.raises(TextModelError, match="word table"):
        TextEncoder(copied_model, check_sha256=False)

    (copied_model / "tokenizer.json").write_text(json.dumps({"not": "a tokenizer"}))
    with pytest.raises(TextModelError, match="not a tokenizer"):
        TextEncoder(copied_model, check_sha256=False)
