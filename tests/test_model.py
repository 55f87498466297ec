"""Encoders, attention fusion and the full model on a tiny config: shapes, masks, weights, gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from mbm.config import MODALITIES
from mbm.encoders import AudioEncoder, ImageEncoder, TextEncoder, Tokens
from mbm.model import ModelOutput, MultimodalModel

SUBSETS = [s for r in (1, 2, 3) for s in itertools.combinations(MODALITIES, r)]  # all 7 non-empty subsets
ATOL = 1e-5


def subset_inputs(inputs: dict, subset) -> dict:
    return {m: inputs[m] for m in subset}


def check_weights(out: ModelOutput, present_rows: list[set[str]]) -> None:
    """Modality weights sum to 1, absent = exactly 0, present > 0; token weights sum to 1 per present row."""
    w = out.modality_weights
    assert w.shape == (len(present_rows), len(MODALITIES))
    assert torch.allclose(w.sum(1), torch.ones(len(present_rows)), atol=ATOL), w
    for row, present in enumerate(present_rows):
        for j, m in enumerate(MODALITIES):
            if m in present:
                assert w[row, j] > 0, f"row {row}: present {m} got weight 0"
                tw = out.token_weights[m][row]
                assert torch.all(tw >= 0)
                assert tw.sum().item() == pytest.approx(1.0, abs=ATOL), f"row {row} {m}: {tw}"
            else:
                assert w[row, j].item() == 0.0, f"row {row}: absent {m} got weight {w[row, j].item()}"
                if m in out.token_weights:
                    assert torch.all(out.token_weights[m][row] == 0), f"row {row}: absent {m} has token weights"


# --- encoders ------------------------------------------------------------------------------------

def test_image_encoder_tokens_and_mask(tiny_config):
    cfg = tiny_config()
    enc = ImageEncoder(cfg.encoder, cfg.image)
    out = enc(torch.rand(2, 3, cfg.image.size, cfg.image.size) - 0.5)
    grid = cfg.image.size // 2 ** len(cfg.encoder.image_channels)
    assert isinstance(out, Tokens)
    assert out.tokens.shape == (2, grid * grid, cfg.encoder.dim)
    assert out.mask.dtype == torch.bool and out.mask.shape == (2, grid * grid) and bool(out.mask.all())


def test_audio_encoder_tokens_and_mask(tiny_config):
    cfg = tiny_config()
    enc = AudioEncoder(cfg.encoder, cfg.audio)
    out = enc(torch.rand(2, cfg.audio.n_mels, cfg.audio.num_frames))
    frames = cfg.audio.num_frames // 4  # two (2, 2) pools in time, the rest pool frequency only
    assert out.tokens.shape == (2, frames, cfg.encoder.dim)
    assert out.mask.dtype == torch.bool and out.mask.shape == (2, frames) and bool(out.mask.all())


def test_text_encoder_masks_padding_and_padding_does_not_change_tokens(tiny_config):
    cfg = tiny_config()
    torch.manual_seed(0)
    enc = TextEncoder(cfg.encoder).eval()
    ids = torch.tensor([[3, 4, 5, 0, 0], [6, 0, 0, 0, 0]])
    out = enc(ids)
    assert out.tokens.shape == (2, 5, cfg.encoder.dim)
    assert out.mask.tolist() == [[True, True, True, False, False], [True, False, False, False, False]]
    # The same words without padding give the same real tokens: padding never leaks in.
    short = enc(torch.tensor([[3, 4, 5]]))
    assert torch.allclose(out.tokens[0, :3], short.tokens[0], atol=ATOL)
    assert torch.all(out.tokens[0, 3:] == 0) and torch.all(out.tokens[1, 1:] == 0)


# --- fusion weights ------------------------------------------------------------------------------

@pytest.mark.parametrize("subset", SUBSETS, ids="+".join)
def test_any_subset_by_missing_keys(tiny_model, tiny_inputs, subset):
    tiny_model.eval()
    with torch.no_grad():
        out = tiny_model(subset_inputs(tiny_inputs, subset))
    assert set(out.logits) == {"device", "word"}
    assert out.logits["device"].shape == (3, 7) and out.logits["word"].shape == (3, 20)
    assert out.fused.shape == (3, 16)
    assert set(out.token_weights) == set(subset)
    check_weights(out, [set(subset)] * 3)
    for t in [*out.logits.values(), out.fused, out.modality_weights, *out.token_weights.values()]:
        assert torch.isfinite(t).all()


def test_absent_modality_masked_via_present_gets_exactly_zero(tiny_model, tiny_config):
    """One batch, one row per subset, every modality given but masked per row by ``present``."""
    torch.manual_seed(2)
    cfg = tiny_config()
    n = len(SUBSETS)
    inputs = {"audio": torch.rand(n, cfg.audio.n_mels, cfg.audio.num_frames),
              "image": torch.rand(n, 3, cfg.image.size, cfg.image.size) - 0.5,
              "text": torch.randint(2, 20, (n, 5))}
    present = {m: torch.tensor([m in s for s in SUBSETS]) for m in MODALITIES}
    tiny_model.eval()
    with torch.no_grad():
        out = tiny_model(inputs, present)
    check_weights(out, [set(s) for s in SUBSETS])


def test_masking_via_present_equals_leaving_the_modality_out(tiny_model, tiny_inputs):
    """A masked modality must not influence anything: the output equals the one without it."""
    tiny_model.eval()
    with torch.no_grad():
        for subset in SUBSETS:
            present = {m: torch.full((3,), m in subset) for m in MODALITIES}
            masked = tiny_model(tiny_inputs, present)
            missing = tiny_model(subset_inputs(tiny_inputs, subset))
            assert torch.allclose(masked.fused, missing.fused, atol=ATOL), subset
            assert torch.allclose(masked.modality_weights, missing.modality_weights, atol=ATOL), subset
            for name in masked.logits:
                assert torch.allclose(masked.logits[name], missing.logits[name], atol=ATOL), subset


def test_bf16_autocast_encoders_give_float32_tokens_close_to_full_precision(tiny_model, tiny_inputs):
    """``encoder_autocast`` (training's ``--precision bf16``): the encoders run in bfloat16, their tokens
    come back as float32 near the full-precision ones, and every encoder parameter still learns."""
    tiny_model.eval()
    with torch.no_grad():
        full = tiny_model.encode(tiny_inputs)
        tiny_model.encoder_autocast = torch.bfloat16
        half = tiny_model.encode(tiny_inputs)
    for m in MODALITIES:
        assert half[m].tokens.dtype == torch.float32
        assert torch.equal(half[m].mask, full[m].mask)
        assert not torch.equal(half[m].tokens, full[m].tokens), f"{m}: autocast did not run"
        torch.testing.assert_close(half[m].tokens, full[m].tokens, atol=0.05, rtol=0.05)
    tiny_model.train()
    with torch.no_grad():
        tiny_model.fusion.query.normal_()
    loss_over_all_heads(tiny_model(tiny_inputs), 3).backward()
    for name, p in tiny_model.encoders.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient under autocast"


def test_forward_subsets_equals_running_each_subset_alone(tiny_model, tiny_inputs):
    """The predictor's shortcut (encoders once, fusion per subset) gives what separate runs give."""
    tiny_model.eval()
    one = {m: x[1:2] for m, x in tiny_inputs.items()}  # a single sample
    with torch.no_grad():
        out = tiny_model.forward_subsets(one, SUBSETS)
        check_weights(out, [set(s) for s in SUBSETS])
        for row, subset in enumerate(SUBSETS):
            alone = tiny_model(subset_inputs(one, subset))
            assert torch.allclose(out.modality_weights[row], alone.modality_weights[0], atol=ATOL), subset
            for name in alone.logits:
                assert torch.allclose(out.logits[name][row], alone.logits[name][0], atol=ATOL), subset


def test_text_padding_gets_zero_token_weight_and_all_padding_text_is_absent(tiny_model, tiny_inputs):
    tiny_model.eval()
    inputs = dict(tiny_inputs, text=torch.tensor([[3, 4, 5, 6], [7, 0, 0, 0], [0, 0, 0, 0]]))
    with torch.no_grad():
        out = tiny_model(inputs)
    tw = out.token_weights["text"]
    assert torch.all(tw[1, 1:] == 0), "padding tokens must get exactly 0 weight"
    assert tw[1, 0].item() == pytest.approx(1.0, abs=ATOL)
    check_weights(out, [set(MODALITIES), set(MODALITIES), {"audio", "image"}])


def test_modality_order_in_the_dict_does_not_matter(tiny_model, tiny_inputs):
    tiny_model.eval()
    with torch.no_grad():
        a = tiny_model(dict(tiny_inputs))
        b = tiny_model({m: tiny_inputs[m] for m in reversed(MODALITIES)})
    assert torch.equal(a.modality_weights, b.modality_weights)
    assert torch.equal(a.logits["word"], b.logits["word"])


def test_single_sample_batch_works(tiny_model, tiny_inputs):
    tiny_model.eval()
    with torch.no_grad():
        out = tiny_model({m: x[:1] for m, x in tiny_inputs.items()})
    assert out.logits["device"].shape == (1, 7)
    check_weights(out, [set(MODALITIES)])


def test_bad_modality_sets_are_refused(tiny_model, tiny_inputs):
    with pytest.raises(ValueError, match="unknown modalities"):
        tiny_model({"video": torch.zeros(3, 4), **tiny_inputs})
    with pytest.raises(AssertionError, match="at least one modality"):
        tiny_model({})
    nothing = {m: torch.tensor([True, False, True]) for m in MODALITIES}
    with pytest.raises(AssertionError, match="at least one present modality"):
        tiny_model(tiny_inputs, nothing)


# --- gradients and numerical health --------------------------------------------------------------

def loss_over_all_heads(out: ModelOutput, batch: int) -> torch.Tensor:
    torch.manual_seed(3)
    return sum(F.cross_entropy(logits, torch.randint(0, logits.shape[1], (batch,)))
               for logits in out.logits.values())


def test_every_parameter_gets_a_gradient(tiny_model, tiny_inputs):
    tiny_model.train()
    # The fusion query starts at zero (uniform attention), which makes the key projection's gradient
    # exactly zero on the very first step; a trained model has a non-zero query, so use one here.
    with torch.no_grad():
        tiny_model.fusion.query.normal_()
    loss_over_all_heads(tiny_model(tiny_inputs), 3).backward()
    # No exemptions: the design has no parameter whose gradient is zero by construction (no bias
    # before a softmax, which would ignore a shared shift).
    for name, p in tiny_model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"
    emb = tiny_model.encoders["text"].embed.weight.grad
    assert torch.all(emb[0] == 0), "the padding embedding must not learn"
    used = tiny_inputs["text"][tiny_inputs["text"] != 0].unique()
    assert torch.all(emb[used].abs().sum(1) > 0), "every word in the batch must get a gradient"


def test_gradients_reach_every_parameter_at_initialisation(tiny_model, tiny_inputs):
    tiny_model.train()
    loss_over_all_heads(tiny_model(tiny_inputs), 3).backward()
    for name, p in tiny_model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert tiny_model.fusion.query.grad.abs().sum() > 0, "the zero-initialised query must start learning"


def test_no_nan_on_extreme_inputs(tiny_model, tiny_config):
    """Silent audio (a constant mel), a flat image and one-word text, in train and eval mode."""
    cfg = tiny_config()
    inputs = {"audio": torch.ones(2, cfg.audio.n_mels, cfg.audio.num_frames),
              "image": torch.full((2, 3, cfg.image.size, cfg.image.size), -0.5),
              "text": torch.tensor([[1], [19]])}
    for train in (True, False):
        tiny_model.train(train)
        tiny_model.zero_grad()
        out = tiny_model(inputs)
        for t in [*out.logits.values(), out.fused, out.modality_weights, *out.token_weights.values()]:
            assert torch.isfinite(t).all(), f"non-finite output (train={train})"
        if train:
            loss_over_all_heads(out, 2).backward()
            for name, p in tiny_model.named_parameters():
                assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name}"


def test_seeded_models_are_identical(tiny_config):
    torch.manual_seed(0)
    a = MultimodalModel(tiny_config())
    torch.manual_seed(0)
    b = MultimodalModel(tiny_config())
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("reattend", [False, True])
def test_evidence_is_what_the_quick_prediction_loses_without_each_input(tiny_config, tiny_inputs, reattend):
    """Evidence pooling (mbm.fusion): per input and head, the top class's probability lost without it."""
    cfg = tiny_config(pooling="evidence")
    cfg.fusion.evidence_reattend = reattend
    torch.manual_seed(0)
    model = MultimodalModel(cfg).eval()
    fusion = model.fusion
    with torch.no_grad():
        tokens = model.encode(tiny_inputs, {"image": torch.tensor([True, True, False]),
                                            "text": torch.tensor([True, False, False])})
        pooled, has, _, present = fusion._pool_inside_modalities(*fusion._attend(tokens))
        evidence, joint = fusion._evidence(pooled, has, tokens, present, model.head_probabilities)  # (B, P, H), (B, P)

        def quick(toks, row, leave_out=None):  # heads on the mean of the row's pooled vectors
            pooled_, has_, _, _ = fusion._pool_inside_modalities(*fusion._attend(toks))
            keep = has_[row].clone()
            if leave_out is not None:
                keep[present.index(leave_out)] = False
            return model.head_probabilities(pooled_[row][keep].mean(0, keepdim=True))

        full = quick(tokens, 0)  # row 0 has all three inputs
        without_image = {**tokens, "image": tokens["image"].keep_rows(torch.zeros(3, dtype=torch.bool))}
        rest = quick(without_image, 0) if reattend else quick(tokens, 0, leave_out="image")

    assert evidence.shape == (3, 3, len(full)) and joint.shape == (3, 3)
    whole_full, whole_rest = 1.0, 1.0  # the whole answer: every head's top class at once
    for k, head in enumerate(sorted(full)):
        top = full[head].argmax()
        expected = full[head][0, top] - rest[head][0, top]
        assert evidence[0, present.index("image"), k].item() == pytest.approx(expected.item(), abs=1e-5)
        whole_full, whole_rest = whole_full * full[head][0, top], whole_rest * rest[head][0, top]
    assert joint[0, present.index("image")].item() == pytest.approx((whole_full - whole_rest).item(), abs=1e-5)
    assert torch.all(evidence[1, present.index("text")] == 0) and joint[1, present.index("text")] == 0  # no text
    assert torch.all(evidence[2] == 0) and torch.all(joint[2] == 0)  # audio only: nothing to leave out


def test_exact_evidence_in_one_stacked_pass_equals_one_pass_per_input(tiny_config, tiny_inputs):
    """At inference the leave-one-out re-attention runs as one batch of copies; training runs the loop."""
    cfg = tiny_config(pooling="evidence")
    cfg.fusion.evidence_reattend = True
    torch.manual_seed(0)
    model = MultimodalModel(cfg).eval()
    fusion = model.fusion
    present_rows = {"image": torch.tensor([True, True, False]), "text": torch.tensor([True, False, True])}
    with torch.no_grad():
        tokens = model.encode(tiny_inputs, present_rows)
        pooled, has, _, present = fusion._pool_inside_modalities(*fusion._attend(tokens))
        stacked = fusion._evidence(pooled, has, tokens, present, model.head_probabilities)
        for module in model.modules():  # the training path, without dropout's randomness
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
            elif isinstance(module, torch.nn.MultiheadAttention):
                module.dropout = 0.0
        model.train()
        looped = fusion._evidence(pooled, has, tokens, present, model.head_probabilities)
    assert stacked.per_head.abs().sum() > 0 and stacked.joint.abs().sum() > 0
    for a, b in zip(stacked, looped):  # per head, then the whole answer
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_evidence_gain_adds_gain_times_the_whole_answers_loss_to_the_scores(tiny_config, tiny_inputs):
    """FusionConfig.evidence_gain g: weights = softmax over present inputs of (gate score + g * joint evidence)."""
    present_rows = {"image": torch.tensor([True, True, False]), "text": torch.tensor([True, False, True])}
    out = {}
    for gain in (0.0, 2.0):
        cfg = tiny_config(pooling="evidence")
        cfg.fusion.evidence_reattend = True
        cfg.fusion.evidence_gain = gain
        torch.manual_seed(0)
        model = MultimodalModel(cfg).eval()  # the same weights for both gains
        with torch.no_grad():
            tokens = model.encode(tiny_inputs, present_rows)
            pooled, has, _, present = model.fusion._pool_inside_modalities(*model.fusion._attend(tokens))
            joint = model.fusion._evidence(pooled, has, tokens, present, model.head_probabilities).joint  # (B, P)
            out[gain] = model.fuse(tokens).modality_weights  # (B, M)
    cols = [model.modalities.index(m) for m in present]
    assert joint.abs().sum() > 0
    # log w(0) is the gate's score up to a per-row constant, so adding 2 * joint and renormalising must give w(2)
    expected = (out[0.0][:, cols].log() + 2.0 * joint).masked_fill(~has, float("-inf")).softmax(1)
    torch.testing.assert_close(out[2.0][:, cols], expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out[2.0], out[0.0])


@pytest.mark.parametrize("fusion, message", [
    ({"pooling": "nonsense"}, "unknown fusion pooling"),
    ({"pooling": "tokens", "evidence_reattend": True}, "needs evidence pooling"),
    ({"pooling": "tokens", "evidence_gain": 1.0}, "an evidence gain needs evidence pooling"),
    ({"pooling": "evidence", "evidence_gain": -1.0}, "the evidence gain must be >= 0"),
])
def test_fusion_options_that_mean_nothing_are_refused(tiny_config, fusion, message):
    cfg = tiny_config()
    for key, value in fusion.items():
        setattr(cfg.fusion, key, value)
    with pytest.raises(ValueError, match=message):
        MultimodalModel(cfg)


def test_word_distillation_keeps_the_teachers_word_answer_to_speech_alone(tiny_config, tiny_inputs):
    """Stage 2's KL term (TrainConfig.word_distill): zero against itself, positive against another
    model, its gradient reaching the student only."""
    from mbm.config import TrainConfig
    from mbm.model import MultimodalModel
    from mbm.scenarios.voice_control.training_loss import VoiceControlLoss

    torch.manual_seed(0)
    student = MultimodalModel(tiny_config(heads={"device": 7, "word": 20})).eval()
    torch.manual_seed(1)
    other = MultimodalModel(tiny_config(heads={"device": 7, "word": 20})).eval().requires_grad_(False)
    audio = tiny_inputs["audio"]
    train = TrainConfig(word_distill=2.0)
    assert float(VoiceControlLoss(student, train).word_distillation(audio)) == 0.0  # no teacher
    itself = VoiceControlLoss(student, train, student).word_distillation(audio)
    assert float(itself.detach()) == pytest.approx(0, abs=1e-6)
    kl = VoiceControlLoss(student, train, other).word_distillation(audio)
    assert float(kl.detach()) > 0
    kl.backward()
    assert student.heads["word"][-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in other.parameters())
