"""Voice control's typed text read by MiniLM (stage 3): word pieces, their vectors in context, the model's
config, the ids that hide a word or stand for noise, and how pieces are shown."""

from __future__ import annotations

import pytest
import torch

from mbm.config import EncoderConfig, ModelConfig, TextConfig
from mbm.features.text_encoder import FIRST_WORD_PIECE, MINILM_VOCAB, UNKNOWN_PIECE, PretrainedTextEncoder
from mbm.model import MultimodalModel, random_word_ids, unknown_word_id
from mbm.preprocess import InputError, encode_text
from mbm.viz import joined_words, text_highlights

TCFG = TextConfig()


def test_text_becomes_word_pieces_without_a_vocabulary_of_its_own():
    out = encode_text("Switch on the telly", [], TCFG)
    assert joined_words(out.tokens) == "switch on the telly"  # lower-cased, pieces joined back
    assert all(i >= FIRST_WORD_PIECE for i in out.ids.tolist()) and not out.notes


def test_long_text_is_cut_to_max_tokens_with_a_note():
    out = encode_text("please turn the lamp on " * 20, [], TCFG)
    assert len(out.ids) == TCFG.max_tokens and f"first {TCFG.max_tokens}" in " ".join(out.notes)


@pytest.mark.parametrize("text", ["включи свет", "打开灯", "أطفئ الضوء"])
def test_other_scripts_are_refused_with_a_message(text):
    with pytest.raises(InputError, match="trained on English"):
        encode_text(text, [], TCFG)


def test_symbols_alone_are_refused():
    with pytest.raises(InputError, match="no words"):
        encode_text("💡🔥", [], TCFG)


def test_vectors_in_context_ignore_padding_and_the_batch():
    enc = PretrainedTextEncoder(EncoderConfig())
    short = encode_text("turn it up", [], TCFG).ids
    long = encode_text("could you turn up the reading lamp for me", [], TCFG).ids
    batch = torch.zeros(2, len(long), dtype=torch.long)
    batch[0, :len(short)], batch[1] = short, long
    together = enc.pieces_in_context(batch)  # (2, L, 384)
    alone = enc.pieces_in_context(short[None])
    assert torch.allclose(together[0, :len(short)], alone[0], atol=1e-5)  # [SEP] after each row's own pieces
    assert together[0, len(short):].abs().sum() == 0
    tokens = enc(batch)
    assert tokens.tokens.shape == (2, len(long), EncoderConfig().dim) and tokens.mask.sum().item() == len(short) + len(long)


def test_only_the_linear_map_is_stored():
    cfg = ModelConfig(heads={"device": 7, "word": 20})
    cfg.encoder.text_backbone = "minilm"
    names = [k for k in MultimodalModel(cfg).state_dict() if k.startswith("encoders.text.")]
    assert names == ["encoders.text.proj.weight", "encoders.text.proj.bias"]
    cfg.encoder.text_backbone = "letters"
    with pytest.raises(ValueError, match="unknown text backbone"):
        MultimodalModel(cfg)


def test_hidden_and_random_words_follow_the_text_encoder():
    words, pieces = ModelConfig(heads={"device": 7}), ModelConfig(heads={"device": 7})
    pieces.encoder.text_backbone = "minilm"
    assert unknown_word_id(words) == 1 and unknown_word_id(pieces) == UNKNOWN_PIECE
    g = torch.Generator().manual_seed(0)
    r = random_word_ids(pieces, (50, 8), g)
    assert r.min() >= FIRST_WORD_PIECE and r.max() < MINILM_VOCAB
    r = random_word_ids(words, (50, 8), g)
    assert r.min() >= 2 and r.max() < words.encoder.vocab_size


def test_a_continuing_piece_is_shown_with_its_word():
    pairs = text_highlights(["the", "tell", "##y"], [0.1, 0.5, 1.0], separator=" ")
    assert pairs == [("the", 0.1), (" ", None), ("tell", 0.5), ("y", 1.0)]


def test_a_checkpoint_from_before_the_text_backbone_reads_as_words():
    d = ModelConfig(heads={"device": 7}).to_dict()
    del d["encoder"]["text_backbone"]
    assert ModelConfig.from_dict(d).encoder.text_backbone == "words"
    d["encoder"]["letters"] = 1
    with pytest.raises(ValueError, match="unknown EncoderConfig fields"):
        ModelConfig.from_dict(d)
