"""Within-input maps (where inside each input the answer comes from) and the check that they tell the truth.

Two kinds of map rank the *units* of each input — image regions, audio token frame spans, text
words — by importance:

- ``attention``: the fusion's pooling weights over that input's tokens (what the app has shown),
  summed into the units;
- ``occlusion``: how much p(predicted action) drops when that one unit is masked.

The image's units are a ``IMAGE_UNITS`` x ``IMAGE_UNITS`` grid of regions (48 px at 192 px), coarser
than the 7 x 7 tokens: the pretrained image encoder reads a device from any large enough part of
it, so hiding one token's 27 px changes little anywhere and a ranking of such changes is noise.

Masking a unit: image region -> a heavy blur of itself (a box a sixth of the photo wide: the
detail goes, the colours stay); audio span -> the clip's quietest level (silence in the min-max
normalised log-mel); word -> ``<unk>``. (A flat patch of the mean colour is itself a shape the
network reacts to wherever it is put: on held-out inputs at 7 x 7, random 20 % masks cost p 0.18
with it against 0.12 blurred; docs/real_photos.md.)

The deletion check (Captum-style): mask the 20 % of units a map ranks highest and, separately, a
random 20 % (several draws); ``deletion_ratio`` = mean drop of p(predicted action) under the first
over the mean drop under the second, over many inputs. A map that points at what the answer uses
scores well above 1 (target: >= 2); a map no better than chance scores about 1.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from mbm.config import MODALITIES
from mbm.encoders import Tokens
from mbm.scenarios.voice_control.spec import action_probs

IMAGE_UNITS = 4  # the image map's regions per side (at most the token grid's side)
DELETE_SHARE = 0.2  # share of units masked by the deletion check
RANDOM_DRAWS = 4  # random masks per input, averaged
UNK_ID = 1  # the vocabulary's <unk> (mbm.preprocess.build_vocab)
SAMPLES = 60  # held-out input sets the evaluation checks (each: every input present)


def unit_spans(modality: str, x: torch.Tensor, n_tokens: int) -> list:
    """The input positions each token covers, for one sample ``x`` (no batch axis).

    image (3, S, S) with g x g tokens -> [(row slice, col slice)] of the u x u regions, u =
    min(g, IMAGE_UNITS), row-major; audio (n_mels, F) with T tokens -> [frame slice]; text (L,) ids
    -> [position] for the real (non-pad) words.
    """
    if modality == "image":
        g = min(IMAGE_UNITS, int(round(math.sqrt(n_tokens))))
        edges = np.linspace(0, x.shape[-1], g + 1).round().astype(int)
        return [(slice(edges[r], edges[r + 1]), slice(edges[c], edges[c + 1])) for r in range(g) for c in range(g)]
    if modality == "audio":
        edges = np.linspace(0, x.shape[-1], n_tokens + 1).round().astype(int)
        return [slice(edges[t], edges[t + 1]) for t in range(n_tokens)]
    return [int(i) for i in torch.nonzero(x != 0).flatten()]


def mask_units(modality: str, x: torch.Tensor, spans: list, units) -> torch.Tensor:
    """A copy of one sample ``x`` with the given units masked (see the module docstring)."""
    y = x.clone()
    blurred = _blurred(x) if modality == "image" and len(units) else None
    for u in units:
        if modality == "image":
            rows, cols = spans[u]
            y[:, rows, cols] = blurred[:, rows, cols]
        elif modality == "audio":
            y[:, spans[u]] = x.min()
        else:
            y[spans[u]] = UNK_ID
    return y


def _blurred(image: torch.Tensor) -> torch.Tensor:
    """(3, S, S) -> the same blurred by a box about S / 6 wide (odd), edges averaged over the inside."""
    k = 2 * max(1, round(image.shape[-1] / 12)) + 1
    return F.avg_pool2d(image[None].float(), k, stride=1, padding=k // 2, count_include_pad=False)[0].to(image.dtype)


def unit_weights(modality: str, weights: torch.Tensor, n_units: int) -> torch.Tensor:
    """One input's token attention (T,) -> per unit (n_units,): image tokens summed into the regions
    (a g x g grid pooled to u x u, area-weighted), audio and text unchanged (a unit is a token)."""
    if modality != "image" or len(weights) == n_units:
        return weights
    g, u = int(round(math.sqrt(len(weights)))), int(round(math.sqrt(n_units)))
    pooled = F.adaptive_avg_pool2d(weights.float().view(1, 1, g, g), u).flatten()
    return pooled / pooled.sum().clamp_min(1e-12) * weights.sum()


@torch.inference_mode()
def _p_target(model, index: torch.Tensor, sample: dict[str, torch.Tensor], target: int,
              modality: str | None = None, variants: list[torch.Tensor] | None = None) -> torch.Tensor:
    """p(action ``target``) for ``sample`` (1 row), or with ``modality`` replaced by each variant (R rows).

    The other inputs are encoded once and their tokens repeated; only the varied input is encoded per row.
    """
    if modality is None:
        logits = model({m: x[None] for m, x in sample.items()}).logits
    else:
        n = len(variants)
        tokens = {m: Tokens(t.tokens.expand(n, -1, -1), t.mask.expand(n, -1))
                  for m, t in model.encode({m: x[None] for m, x in sample.items() if m != modality}).items()}
        tokens.update(model.encode({modality: torch.stack(variants)}))
        logits = model.forward_head(model.fuse(tokens).fused)
    return action_probs(logits["device"].softmax(-1), logits["word"].softmax(-1), index)[:, target]


@torch.inference_mode()
def explain_sample(model, index: torch.Tensor, sample: dict[str, torch.Tensor],
                   generator: torch.Generator | None = None) -> dict[str, dict]:
    """Maps and deletion drops for one input set ``sample`` (modality -> tensor without a batch axis).

    Returns modality -> {"attention": (U,), "occlusion": (U,), "drop": {"attention", "occlusion",
    "random"}}: per unit importances, and p(predicted action) lost when the top 20 % by each map (or
    a random 20 %, averaged over draws) are masked.
    """
    generator = generator or torch.Generator().manual_seed(0)
    full = model({m: x[None] for m, x in sample.items()})
    probs = action_probs(full.logits["device"].softmax(-1), full.logits["word"].softmax(-1), index)[0]  # (A,)
    target = int(probs.argmax())
    p_full = float(probs[target])
    out = {}
    for m in (m for m in MODALITIES if m in sample):
        x = sample[m]
        attention = full.token_weights[m][0]  # (T_m,)
        spans = unit_spans(m, x, len(attention))
        if m == "text":  # one unit per real word; the attention is over the same positions
            attention = attention[torch.tensor(spans, dtype=torch.long)]
        attention = unit_weights(m, attention, len(spans))  # (U,)
        n = len(spans)
        if n < 2:
            continue
        occluded = _p_target(model, index, sample, target, m, [mask_units(m, x, spans, [u]) for u in range(n)])
        maps = {"attention": attention.float(), "occlusion": p_full - occluded}
        k = max(1, math.ceil(DELETE_SHARE * n))
        variants = [mask_units(m, x, spans, maps[name].argsort(descending=True)[:k].tolist())
                    for name in ("attention", "occlusion")]
        variants += [mask_units(m, x, spans, torch.randperm(n, generator=generator)[:k].tolist())
                     for _ in range(RANDOM_DRAWS)]
        drops = p_full - _p_target(model, index, sample, target, m, variants)
        out[m] = {"attention": maps["attention"].numpy(), "occlusion": maps["occlusion"].numpy(),
                  "drop": {"attention": float(drops[0]), "occlusion": float(drops[1]),
                           "random": float(drops[2:].mean())}}
    return out


@torch.inference_mode()
def occlusion_maps(predictor, result) -> dict[str, list[float]]:
    """Per present input, p(predicted action) lost when each of its units is masked (>= 0), per token.

    ``predictor``: the VoiceControlPredictor that made ``result`` (its model, action table and
    batching). Audio and text lists have the length of ``result.token_weights[m]``, so they draw
    where the attention maps draw; the image's is one number per region of the u x u grid
    (:func:`unit_spans`, row-major); an input with fewer than two units keeps its attention weights.
    """
    sample = {m: x[0] for m, x in predictor.batch(result.inputs).items()}
    target = predictor.actions.index(result.action)
    p_full = float(_p_target(predictor.model, predictor.action_index, sample, target)[0])
    out = {}
    for m, x in sample.items():
        attention = result.token_weights[m]
        spans = unit_spans(m, x, len(attention))
        if len(spans) < 2:
            out[m] = list(attention)
            continue
        variants = [mask_units(m, x, spans, [u]) for u in range(len(spans))]
        lost = (p_full - _p_target(predictor.model, predictor.action_index, sample, target, m, variants)).clamp_min(0)
        if m == "text":  # units are the real words; the token list is the same words
            out[m] = [0.0] * len(attention)
            for u, position in enumerate(spans):
                if position < len(attention):
                    out[m][position] = float(lost[u])
        else:
            out[m] = lost.tolist()
    return out


def with_occlusion_maps(predictor, result):
    """``result`` with its drawn maps replaced by :func:`occlusion_maps` (``map_kind="occlusion"``)."""
    return dataclasses.replace(result, maps=occlusion_maps(predictor, result), map_kind="occlusion")


def deletion_ratios(model, index: torch.Tensor, samples: list[dict[str, torch.Tensor]]) -> dict:
    """``map_deletion_ratio`` per map kind and modality over ``samples`` (see the module docstring).

    Returns {"attention": {modality: ratio}, "occlusion": {...}, "n": {modality: inputs used}}; a
    ratio is None where random masking costs nothing on average (no ratio to take).
    """
    model.eval()
    generator = torch.Generator().manual_seed(0)
    drops: dict[str, dict[str, list[float]]] = {}
    for sample in samples:
        for m, info in explain_sample(model, index, sample, generator).items():
            for name, d in info["drop"].items():
                drops.setdefault(m, {}).setdefault(name, []).append(d)
    result: dict = {"attention": {}, "occlusion": {}, "n": {}}
    for m, by_kind in drops.items():
        rand = float(np.mean(by_kind["random"]))
        for name in ("attention", "occlusion"):
            result[name][m] = round(float(np.mean(by_kind[name])) / rand, 3) if rand > 1e-6 else None
        result["n"][m] = len(by_kind["random"])
    return result


def held_out_samples(ckpt, mels: torch.Tensor, pixels: torch.Tensor, clips, photos, pairs: list[tuple[int, int]],
                     n: int = SAMPLES) -> list[dict[str, torch.Tensor]]:
    """Up to ``n`` evenly spread (clip, photo) pairs, each with a typed command in a held-out phrasing."""
    from mbm.scenarios.voice_control.cached_runs import typed_commands

    chosen = [pairs[k] for k in np.linspace(0, len(pairs) - 1, min(n, len(pairs))).round().astype(int)]
    _, ids, usable, _ = typed_commands([(photos[j].device, clips[i].word) for i, j in chosen], ckpt.vocab,
                                       ckpt.config.text)
    return [{"audio": mels[i], "image": pixels[j], "text": ids[k]}
            for k, (i, j) in enumerate(chosen) if usable[k]]
