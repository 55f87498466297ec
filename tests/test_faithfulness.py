"""The faithfulness metrics and the results file of ``python -m mbm.evaluate``
(mbm.scenarios.voice_control.faithfulness)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_data import build_fake_data

from mbm.agreement import spearman


def test_spearman_definition():
    assert spearman(np.array([0.2, 0.5, 0.3]), np.array([0.0, 0.9, 0.1])) == 1.0
    assert spearman(np.array([0.2, 0.5, 0.3]), np.array([0.9, 0.0, 0.1])) == -1.0
    assert spearman(np.array([0.2, 0.5, 0.3]), np.array([0.1, 0.1, 0.1])) is None  # undefined: skipped


def test_evaluate_adds_faithfulness_and_writes_results(tmp_path, voice_checkpoint_path, capsys):
    from mbm.evaluate import main

    root = tmp_path / "data"
    build_fake_data(root, small=True)
    results = tmp_path / "eval_results.json"
    threads = torch.get_num_threads()
    try:
        main(["--scenario", "voice_control", "--data", str(root), "--checkpoint", str(voice_checkpoint_path),
              "--json", "--threads", "1", "--results", str(results)])
    finally:
        torch.set_num_threads(threads)
    out = json.loads(capsys.readouterr().out.strip())
    assert -1.0 <= out["weight_effect_spearman"] <= 1.0 and out["weight_effect_spearman_n"] > 0
    groups = out["weight_effect_spearman_by_text_names"]  # the same mean, split by what the text names
    assert set(groups) == {"device", "word", "both"}
    assert sum(g["weight_effect_spearman_n"] for g in groups.values()) == out["weight_effect_spearman_n"]
    assert all(g["weight_effect_spearman"] is None or -1.0 <= g["weight_effect_spearman"] <= 1.0
               for g in groups.values())
    by_answer = out["weight_effect_spearman_by_answer"]  # split by whether the fused answer is right
    assert set(by_answer) == {"right", "wrong"}
    assert sum(g["weight_effect_spearman_n"] for g in by_answer.values()) == out["weight_effect_spearman_n"]
    rhos = [(g["weight_effect_spearman"], g["weight_effect_spearman_n"])
            for g in by_answer.values() if g["weight_effect_spearman_n"]]
    assert abs(sum(r * n for r, n in rhos) / out["weight_effect_spearman_n"] - out["weight_effect_spearman"]) < 1e-3
    for key in ("noised_weight_drop", "noised_weight_drop_unseen_noise"):
        per = [v["relative_drop"] for v in out[f"{key}_by_modality"].values()]
        assert set(out[f"{key}_by_modality"]) == {"audio", "image", "text"}
        assert abs(out[key] - np.mean(per)) < 1e-3  # the mean over the three modalities
    assert out["noised_weight_drop_by_modality"] != out["noised_weight_drop_unseen_noise_by_modality"]
    assert 0.0 <= out["late_fusion_action_accuracy"] <= 1.0
    assert set(out["action_accuracy_by_subset"]) == {"audio", "image", "text", "audio+image", "audio+text",
                                                     "image+text", "audio+image+text"}
    saved = json.loads(results.read_text())
    m = np.array(saved["confusion"]["device"]["matrix"])
    assert m.shape == (7, 7) and m.sum() == saved["n_triples"]
    curves = saved["robustness"]
    for name in ("audio_noise", "image_blur", "image_occlusion", "text_typos"):
        assert len(curves[name]["accuracy"]) == len(curves["levels"]) == 5
    assert saved["command"].startswith("python -m mbm.evaluate")


def test_portrait_faithfulness_on_gallery_prototypes():
    from mbm.scenarios.portrait.engine import Queries, gallery_tensors
    from mbm.scenarios.portrait.faithfulness import faithfulness_portrait
    from mbm.scenarios.portrait.gallery import Gallery
    from mbm.scenarios.portrait.model import load_portrait_model
    from mbm.scenarios.portrait.predictor import DEFAULT_CHECKPOINT, SHIPPED_GALLERY

    model, _ = load_portrait_model(DEFAULT_CHECKPOINT)
    gallery = Gallery.load(SHIPPED_GALLERY)
    g = gallery_tensors(gallery)
    have = torch.nonzero(g.available.all(1)).flatten()[:6]  # people with voice and profile
    q = Queries(face=g.protos["image"][have], face_quality=torch.ones(len(have)), voice=g.protos["audio"][have],
                profile=g.protos["text"][have])
    out = faithfulness_portrait(model, gallery, q, [g.names[i] for i in have.tolist()])
    assert out["faithfulness_n"] == len(have) > 0
    assert out["weight_effect_spearman"] is None or -1 <= out["weight_effect_spearman"] <= 1
    assert set(out["noised_weight_drop_by_modality"]) == {"voice", "face", "profile"}
    assert isinstance(out["noised_weight_drop"], float)


class _PresenceModel(torch.nn.Module):
    """A stand-in model whose fused vector is which modalities are present (to test the removal-effect loss)."""

    class _Fusion(torch.nn.Module):
        modalities = ("audio", "image", "text")

        def forward(self, tokens):
            from mbm.fusion import FusionOutput

            fused = torch.stack([tokens[m].mask.any(1).float() for m in self.modalities], 1)  # (B, 3)
            return FusionOutput(fused, fused / fused.sum(1, keepdim=True), {})

    def __init__(self):
        super().__init__()
        self.fusion = self._Fusion()

    def fuse(self, tokens):
        return self.fusion(tokens)

    def forward_head(self, fused):
        return {"presence": fused}


def _tokens(present):
    from mbm.encoders import Tokens

    return {m: Tokens(torch.zeros(len(present), 2, 4), torch.tensor([[p[k]] * 2 for p in present]))
            for k, m in enumerate(("audio", "image", "text"))}


def _true_prob(logits):
    # Removing audio costs most, then image, then text: p = 0.2 + 0.5 audio + 0.2 image + 0.05 text.
    return logits["presence"] @ torch.tensor([0.5, 0.2, 0.05]) + 0.2


def test_removal_effect_loss_is_lowest_at_softmax_of_the_effects():
    from mbm.scenarios.voice_control.removal_loss import removal_effect_loss

    model, tokens = _PresenceModel(), _tokens([(True, True, True)] * 4)
    target = (torch.tensor([0.5, 0.2, 0.05]) / 0.2).softmax(0)  # the drops of _true_prob, over T = 0.2
    at_target = target.repeat(4, 1)
    scores = target.flip(0).log().repeat(4, 1).requires_grad_()  # weights = softmax(scores), reversed order
    low, high = (removal_effect_loss(model, tokens, w, _true_prob, temperature=0.2)
                 for w in (at_target, scores.softmax(1)))
    entropy = -(target * target.log()).sum()
    assert abs(low.item() - entropy.item()) < 1e-5 and high.item() > low.item() + 0.5
    high.backward()
    assert scores.grad[:, 0].lt(0).all() and scores.grad[:, 2].gt(0).all()  # raise audio, lower text


def test_removal_effect_loss_targets_only_present_modalities():
    from mbm.scenarios.voice_control.removal_loss import removal_effect_loss

    model = _PresenceModel()
    # audio + text: removing audio costs 0.5, removing text 0.05; image absent gets no target
    tokens = _tokens([(True, False, True), (True, False, False)])
    w = torch.tensor([[0.5, 0.0, 0.5], [1.0, 0.0, 0.0]], requires_grad=True)
    loss = removal_effect_loss(model, tokens, w, _true_prob, temperature=0.2)
    q = (torch.tensor([0.5, 0.05]) / 0.2).softmax(0)
    expected = -(q * torch.tensor([0.5, 0.5]).log()).sum()  # the one-modality sample is left out
    assert abs(loss.item() - expected.item()) < 1e-5
    single = removal_effect_loss(model, _tokens([(True, False, False)]), w[1:], _true_prob)
    assert single.item() == 0.0 and single.requires_grad


def test_unseen_noise_kinds_differ_from_the_training_noise():
    from mbm.scenarios.voice_control.faithfulness import _colour_blobs, _pink_noise

    g = torch.Generator().manual_seed(0)
    power = torch.fft.rfft(_pink_noise(8, 16000, g)).abs().pow(2).mean(0)  # (8001,)
    assert power[10:100].mean() > 20 * power[4000:8000].mean()  # 1/f: far more low than high frequency
    blobs = _colour_blobs(4, 64, g)
    assert blobs.shape == (4, 3, 64, 64) and 0 <= float(blobs.min()) and float(blobs.max()) <= 255
    step = (blobs[..., 1:] - blobs[..., :-1]).abs().mean()
    white = torch.rand(4, 3, 64, 64, generator=g) * 255
    assert step < 0.1 * (white[..., 1:] - white[..., :-1]).abs().mean()  # smooth, unlike per-pixel noise


def test_evaluate_refuses_an_evidence_gain_the_checkpoint_cannot_use(tmp_path, voice_checkpoint_path, capsys):
    """``--evidence-gain`` overrides FusionConfig.evidence_gain; a usage error, not a traceback, when it means nothing."""
    from mbm.evaluate import main

    for checkpoint, gain, message in ((voice_checkpoint_path, "1", "an evidence gain needs evidence pooling"),
                                      (None, "-1", "the evidence gain must be >= 0")):  # None: the shipped one
        with pytest.raises(SystemExit) as exit_info:
            main(["--scenario", "voice_control", "--data", str(tmp_path), "--evidence-gain", gain,
                  *(["--checkpoint", str(checkpoint)] if checkpoint else [])])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
