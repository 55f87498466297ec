"""Measured faithfulness of the attention weights, subset accuracies, late fusion and robustness curves.

Used by ``python -m mbm.evaluate --scenario voice_control --data DIR --json``. The
encoders run once per clip, photo and typed command (and once per corruption
level); the fusion block and the heads then run on cached tokens for every
modality subset, which keeps the whole analysis to a few seconds on a CPU.

Samples. The audio + image *pairs* are the ones ``action_accuracy`` uses (each
clip with photos of several devices). The *triples* take the first pair of each
clip and add a typed command from the scenario's held-out phrasings
(``make_typed_command(..., held_out=True)``, ``random.Random(TEXT_SEED)``, naming
the device, the word or both, one of the three chosen at random per pair) that
agrees with the pair's true action; a pair whose text has no known word is left
out of the triples (``n_triples`` counts them).

Definitions (all over the triples, every modality present, unless said otherwise):

- ``weight_effect_spearman``: per sample, w_m = the modality weight of m with all
  three present, d_m = p(true action | all three) - p(true action | the two others)
  (the drop when m is removed). The sample's score is the Spearman rank correlation
  of (w_audio, w_image, w_text) with (d_audio, d_image, d_text): Pearson correlation of
  the ranks, ties given their average rank. Samples whose w or d are all equal
  (correlation undefined) are skipped (``weight_effect_spearman_n`` counts the rest).
  The metric is the mean of the per-sample scores; 1 = the weights always order the
  modalities exactly as their measured effects do. ``weight_effect_spearman_by_text_names``
  gives the same mean over the triples whose text names only the device, only the word, or both;
  ``weight_effect_spearman_by_answer`` over the triples whose fused answer is right / wrong (the
  drops are of p(true action): where the answer is wrong the weights explain another answer).
- ``noised_weight_drop``: for each modality m, W_m = mean weight of m over the
  triples, W'_m = the same with m's input replaced by noise (audio: white noise
  through the same log-mel; image: uniform random pixels; text: random vocabulary
  words, same length), the other two clean. Relative drop (W_m - W'_m) / W_m,
  averaged over the three modalities (each also reported). Training replaces inputs
  by these same kinds of noise, so ``noised_weight_drop_unseen_noise`` repeats the
  measure with kinds it never saw: pink (1/f) noise, smooth random colour blobs, and
  a text of words it cannot read (every word ``<unk>``, same length).
- ``late_fusion_action_accuracy``: over the audio + image pairs, the action
  argmax of the average of the audio-only and the image-only action distributions
  (each p(action) = sum p(device) p(word) of that single-modality run); compare with
  ``action_accuracy`` (our attention fusion on the same pairs).
- ``action_accuracy_by_subset``: action accuracy on the triples for every non-empty
  subset of {audio, image, text} (the rest masked out, as an absent input).
- ``confusion``: device and word confusion matrices (rows = truth, columns =
  prediction) of the fused audio + image predictions over the triples' pairs.
- ``robustness`` (only when asked: ``--curves`` or ``--results``): action accuracy
  against corruption level 0, 0.25, 0.5, 0.75, 1 on ``CURVE_SAMPLES`` evenly spaced
  triples, one modality corrupted at a time, seeded: audio noise (``add_noise`` at
  ``snr_for_level``), image blur and occlusion (``mbm.scenarios.voice_control.robustness``) with audio +
  image as inputs; text typos (``typo_text``) with all three.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from mbm.agreement import NOISE_SEED, mean_spearman, spearman, spearman_per_sample
from mbm.config import MODALITIES
from mbm.encoders import Tokens
from mbm.preprocess import UNK, log_mel, normalise_pixels
from mbm.scenarios.voice_control.cached_runs import (
    TEXT_NAMES,
    _accuracy,
    _confusion,
    encode,
    fuse,
    typed_commands,
)
from mbm.scenarios.voice_control.robustness_curves import robustness_curves
from mbm.scenarios.voice_control.spec import DEVICES, WORDS, action_name

CURVE_SAMPLES = 200  # robustness curves use this many triples, evenly spaced


# --- the analysis -----------------------------------------------------------------------------------

def faithfulness_voice_control(model, ckpt, waves: torch.Tensor, mels: torch.Tensor, pixels: torch.Tensor,
                               shown: torch.Tensor, clips, photos, pairs: list[tuple[int, int]],
                               curves: bool = True, tokens: dict[str, Tokens] | None = None,
                               single: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Every metric in the module docstring.

    Args:
        waves: (n_clips, N) model windows; mels: (n_clips, n_mels, F); pixels: (n_photos, 3, S, S) normalised;
        shown: (n_photos, S, S, 3) uint8 crops (for blur/occlusion); pairs: (clip index, photo index).
        curves: also compute the robustness curves.
        tokens: cached {"audio": clip Tokens, "image": photo Tokens} (computed when None).
        single: (p_action audio-only per pair, p_action image-only per pair) when already computed.
    """
    index = torch.tensor(ckpt.extra["action_index"])
    actions = ckpt.extra["actions"]
    model.eval()
    pair_truth = [(photos[j].device, clips[i].word) for i, j in pairs]
    truth = torch.tensor([actions.index(action_name(d, w)) for d, w in pair_truth])
    ci = torch.tensor([i for i, _ in pairs])
    pj = torch.tensor([j for _, j in pairs])
    tok = dict(tokens) if tokens else {"audio": encode(model, "audio", mels), "image": encode(model, "image", pixels)}
    out: dict = {}

    # late fusion on every audio + image pair: single-modality runs depend on one input, so run them once
    # per clip and once per photo, then average the two action distributions of each pair
    if single is None:
        p_a, _, _ = fuse(model, tok, {"audio": torch.arange(len(clips))}, index, ("audio",))  # (n_clips, A)
        p_i, _, _ = fuse(model, tok, {"image": torch.arange(len(photos))}, index, ("image",))  # (n_photos, A)
        single = (p_a[ci], p_i[pj])
    out["late_fusion_action_accuracy"] = _accuracy((single[0] + single[1]) / 2, truth)

    tri = _triples(model, ckpt, tok, pairs, pair_truth, ci, pj, truth)
    out["n_triples"] = len(tri["rows"]["text"])
    if not out["n_triples"]:
        return out
    probs = _subsets(out, model, tok, tri, index, pair_truth)
    w_all = probs[MODALITIES][1]
    _weight_vs_effect(out, probs, tri)
    _noised_weights(out, model, ckpt, tok, tri, index, w_all, waves, pixels)
    if curves:
        n = out["n_triples"]
        sel = torch.linspace(0, n - 1, min(CURVE_SAMPLES, n)).round().long()
        out["robustness"] = robustness_curves(model, ckpt, tok, waves, shown, [tri["texts"][k] for k in sel.tolist()],
                                              {m: r[sel] for m, r in tri["rows"].items()}, tri["truth"][sel], index)
    return out


def _triples(model, ckpt, tok: dict[str, Tokens], pairs, pair_truth, ci, pj, truth) -> dict:
    """The triples: the first pair of each clip plus a held-out-phrasing typed command (pairs whose text has no
    known word left out); the typed commands' tokens go into ``tok["text"]``. Returns the pair each triple is
    (``pair``), its rows per modality, true action, text, what the text names, and the texts' ids."""
    first = sorted({int(i): k for k, (i, _) in reversed(list(enumerate(pairs)))}.values())
    texts, ids, usable, named = typed_commands([pair_truth[k] for k in first], ckpt.vocab, ckpt.config.text)
    keep = torch.nonzero(usable).flatten()
    tri = torch.tensor(first, dtype=torch.long)[keep]
    tok["text"] = encode(model, "text", ids[keep])
    return {"pair": tri, "rows": {"audio": ci[tri], "image": pj[tri], "text": torch.arange(len(tri))},
            "truth": truth[tri], "texts": [texts[k] for k in keep.tolist()],
            "named": [named[k] for k in keep.tolist()], "ids": ids[keep]}


def _subsets(out: dict, model, tok: dict[str, Tokens], tri: dict, index: torch.Tensor, pair_truth) -> dict:
    """Action accuracy of every modality subset on the triples (with and without text, and late fusion of all
    three), the mean weights with text, and the fused audio + image confusion matrices into ``out``; returns
    (p(action), weights) per subset."""
    by_subset, probs = {}, {}
    for k in (1, 2, 3):
        for subset in itertools.combinations(MODALITIES, k):
            p, w, heads = fuse(model, tok, tri["rows"], index, subset)
            probs[subset], by_subset["+".join(subset)] = (p, w), _accuracy(p, tri["truth"])
            if subset == ("audio", "image"):
                pd_ai, pw_ai = heads
    out["action_accuracy_by_subset"] = by_subset
    late3 = sum(probs[(m,)][0] for m in MODALITIES) / 3
    out["action_accuracy_with_text"] = by_subset["+".join(MODALITIES)]
    out["late_fusion_action_accuracy_with_text"] = _accuracy(late3, tri["truth"])
    out["mean_modality_weights_with_text"] = {m: round(float(x), 4)
                                              for m, x in zip(MODALITIES, probs[MODALITIES][1].mean(0))}
    dev_truth = torch.tensor([DEVICES.index(pair_truth[k][0]) for k in tri["pair"].tolist()])
    word_truth = torch.tensor([WORDS.index(pair_truth[k][1]) for k in tri["pair"].tolist()])
    out["confusion"] = {"device": _confusion(pd_ai.argmax(1), dev_truth, DEVICES),
                        "word": _confusion(pw_ai.argmax(1), word_truth, WORDS),
                        "source": "fused audio + image predictions over the triples' pairs (rows = truth)"}
    return probs


def _weight_vs_effect(out: dict, probs: dict, tri: dict) -> None:
    """Weight vs effect: the Spearman correlation per triple of the weights with the drops of p(true action)
    without each input, averaged (in all, by what the text names, by right or wrong answer), and of the means."""
    truth_tri = tri["truth"]
    p_all, w_all = probs[MODALITIES]
    p_true = p_all.gather(1, truth_tri[:, None])[:, 0]  # (N,)
    drops = torch.stack([p_true - probs[tuple(x for x in MODALITIES if x != m)][0].gather(1, truth_tri[:, None])[:, 0]
                         for m in MODALITIES], 1)  # (N, 3) in MODALITIES order
    per_sample = spearman_per_sample(w_all, drops)
    out.update(mean_spearman(per_sample))
    # the same mean over the triples whose typed text names only the device, only the word, or both
    out["weight_effect_spearman_by_text_names"] = {
        group: mean_spearman([r for r, g in zip(per_sample, tri["named"]) if g == group])
        for group in TEXT_NAMES.values()}
    right = (p_all.argmax(1) == truth_tri).tolist()
    out["weight_effect_spearman_by_answer"] = {
        group: mean_spearman([r for r, ok in zip(per_sample, right) if ok == want])
        for group, want in (("right", True), ("wrong", False))}
    out["mean_drop_p_true_without"] = {m: round(float(x), 4) for m, x in zip(MODALITIES, drops.mean(0))}
    # the same order question on the means (the wording): rank of mean weight vs rank of mean drop
    out["weight_effect_spearman_of_means"] = spearman(w_all.mean(0).numpy(), drops.mean(0).numpy())


def _noised_weights(out: dict, model, ckpt, tok: dict[str, Tokens], tri: dict, index: torch.Tensor,
                    w_all: torch.Tensor, waves: torch.Tensor, pixels: torch.Tensor) -> None:
    """Weights when a modality is replaced by noise: the kind training also used, then kinds it never saw."""
    cfg = ckpt.config
    g = torch.Generator().manual_seed(NOISE_SEED)
    n_noise = 64
    trained_noise = {
        "audio": log_mel(torch.randn(n_noise, waves.shape[1], generator=g) * 0.1, cfg.audio),
        "image": normalise_pixels(torch.rand(n_noise, *pixels.shape[1:], generator=g) * 255),
        "text": _random_text(tri["ids"], len(ckpt.vocab), g),
    }
    unseen_noise = {
        "audio": log_mel(_pink_noise(n_noise, waves.shape[1], g), cfg.audio),
        "image": normalise_pixels(_colour_blobs(n_noise, pixels.shape[-1], g)),
        "text": torch.where(tri["ids"] != 0, ckpt.vocab.index(UNK), 0),  # a text of words it cannot read
    }
    for key, noise_in in (("noised_weight_drop", trained_noise), ("noised_weight_drop_unseen_noise", unseen_noise)):
        rel = _weight_drop_under_noise(model, tok, tri["rows"], index, w_all, noise_in)
        drops_rel = [v["relative_drop"] for v in rel.values() if v["relative_drop"] is not None]
        out[key] = round(float(np.mean(drops_rel)), 4) if drops_rel else None
        out[f"{key}_by_modality"] = rel


def _weight_drop_under_noise(model, tok: dict[str, Tokens], rows: dict[str, torch.Tensor], index: torch.Tensor,
                             w_clean: torch.Tensor, noise_in: dict[str, torch.Tensor]) -> dict:
    """Per modality: mean weight clean, mean weight with that input replaced by ``noise_in``, relative drop."""
    rel = {}
    for k, m in enumerate(MODALITIES):
        noisy = dict(tok)
        noisy[m] = encode(model, m, noise_in[m])
        noisy_rows = dict(rows)
        noisy_rows[m] = torch.arange(len(w_clean)) % noisy[m].tokens.shape[0]  # noise samples reused cyclically
        _, w_noise, _ = fuse(model, noisy, noisy_rows, index, MODALITIES)
        clean, noised = float(w_clean[:, k].mean()), float(w_noise[:, k].mean())
        rel[m] = {"clean": round(clean, 4), "noised": round(noised, 4),
                  "relative_drop": round((clean - noised) / clean, 4) if clean > 0 else None}
    return rel


def _pink_noise(n: int, samples: int, g: torch.Generator) -> torch.Tensor:
    """(n, samples) 1/f noise (training only ever replaces audio by white noise)."""
    spec = torch.fft.rfft(torch.randn(n, samples, generator=g))
    freqs = torch.arange(spec.shape[1]).clamp_min(1).float()
    return torch.fft.irfft(spec / freqs.sqrt(), n=samples) * 0.1


def _colour_blobs(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """(n, 3, size, size) smooth random colour fields in 0..255 (training only uses per-pixel noise)."""
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 255
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def _random_text(ids: torch.Tensor, vocab_size: int, g: torch.Generator) -> torch.Tensor:
    """Same lengths as ``ids`` (N, L), every real token replaced by a random word (ids >= 2)."""
    rand = torch.randint(2, vocab_size, ids.shape, generator=g)
    return torch.where(ids != 0, rand, torch.zeros_like(ids))
