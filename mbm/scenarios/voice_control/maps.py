"""Within-input maps (where inside each input the answer comes from) and the check that they tell the truth.

Two kinds of map rank the *units* of each input — image regions, audio token frame spans, text
words — by importance:

- ``attention``: the fusion's pooling weights over that input's tokens (what the app has shown),
  summed into the units;
- ``occlusion``: how much p(predicted action) drops when that one unit is masked.

The image's units are the ``IMAGE_UNITS`` x ``IMAGE_UNITS`` grid of regions (at most the token grid:
6 x 6 regions of 32 px at 192 px, one per image token and per cell of the backbone's grid).

Masking a unit: image region -> the flat mean colour of that region's own pixels (its detail goes,
its average colour stays, nothing of the neighbouring regions comes in); audio span -> the clip's
quietest level (silence in the min-max normalised log-mel); word -> ``<unk>``.

Why these image units and this mask (docs/history.md "Where the image map falls: the fix"):
the map used to rank 4 x 4 regions of 48 px, each masked by a blur of the whole photo copied into
the region. A 48 px region is as coarse as a third of a device that fills half the photo, so even
a perfect map put much of its mass on the background, and the blur copied the device's colours
into the background regions beside it (a box a sixth of the photo wide reaches 16 px across the
edge), so masking background next to the device changed the device's outline: its drop was real
but it was the device's. On validation canvases (device photos shrunk onto a background) the drawn
map's mass on the device went 0.52 -> 0.62 and the image deletion ratio 3.4 -> 3.9 with the
change (a blur from the region's own pixels alone: 0.60 and 3.2). An older choice, one flat patch of
the whole photo's mean colour, cost more under random masks than a blur (docs/history.md, "Round 3 (stop 23)"); a
region's own mean keeps each region's colour.

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

IMAGE_UNITS = 6  # the image map's regions per side (at most the token grid's side: one per token)
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
        g = min(IMAGE_UNITS, round(math.sqrt(n_tokens)))
        edges = np.linspace(0, x.shape[-1], g + 1).round().astype(int)
        return [(slice(edges[r], edges[r + 1]), slice(edges[c], edges[c + 1])) for r in range(g) for c in range(g)]
    if modality == "audio":
        edges = np.linspace(0, x.shape[-1], n_tokens + 1).round().astype(int)
        return [slice(edges[t], edges[t + 1]) for t in range(n_tokens)]
    return [int(i) for i in torch.nonzero(x != 0).flatten()]


def mask_units(modality: str, x: torch.Tensor, spans: list, units) -> torch.Tensor:
    """A copy of one sample ``x`` with the given units masked (see the module docstring)."""
    y = x.clone()
    for u in units:
        if modality == "image":
            rows, cols = spans[u]
            y[:, rows, cols] = x[:, rows, cols].mean((1, 2), keepdim=True)
        elif modality == "audio":
            y[:, spans[u]] = x.min()
        else:
            y[spans[u]] = UNK_ID
    return y


def unit_weights(modality: str, weights: torch.Tensor, n_units: int) -> torch.Tensor:
    """One input's token attention (T,) -> per unit (n_units,): image tokens summed into the regions
    (a g x g grid pooled to u x u, area-weighted), audio and text unchanged (a unit is a token)."""
    if modality != "image" or len(weights) == n_units:
        return weights
    g, u = round(math.sqrt(len(weights))), round(math.sqrt(n_units))
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
    # each input draws its random masks from its own stream: how many units one input has (the image's
    # grid) must not change the random masks, and so the ratios, of the others
    base = int(torch.randint(2 ** 31 - len(MODALITIES), (1,), generator=generator))
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
        own = torch.Generator().manual_seed(base + MODALITIES.index(m))
        variants += [mask_units(m, x, spans, torch.randperm(n, generator=own)[:k].tolist())
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

    Returns {"attention": {modality: ratio}, "occlusion": {...}, "n": {modality: inputs used},
    "mean_drop": {modality: {"attention", "occlusion", "random": mean p lost}}}; a ratio is None where
    random masking costs nothing on average (no ratio to take).
    """
    model.eval()
    generator = torch.Generator().manual_seed(0)
    drops: dict[str, dict[str, list[float]]] = {}
    for sample in samples:
        for m, info in explain_sample(model, index, sample, generator).items():
            for name, d in info["drop"].items():
                drops.setdefault(m, {}).setdefault(name, []).append(d)
    result: dict = {"attention": {}, "occlusion": {}, "n": {}, "mean_drop": {}}
    for m, by_kind in drops.items():
        result["mean_drop"][m] = {name: float(np.mean(d)) for name, d in by_kind.items()}
        rand = result["mean_drop"][m]["random"]
        for name in ("attention", "occlusion"):
            result[name][m] = round(float(np.mean(by_kind[name])) / rand, 3) if rand > 1e-6 else None
        result["n"][m] = len(by_kind["random"])
    return result


def mass_share(heat: np.ndarray, box: tuple[float, float, float, float]) -> float | None:
    """The share of a non-negative map's mass inside ``box`` = (top, left, bottom, right), in pixels of
    ``heat`` (H, W) (bottom, right exclusive; fractional edges count the covered part of a pixel); None
    when the map has no mass (all zero: nothing is drawn). Negative values count as zero.
    """
    heat = np.clip(np.asarray(heat, dtype=np.float64), 0.0, None)
    total = heat.sum()
    if total <= 0:
        return None
    top, left, bottom, right = box

    def cover(lo: float, hi: float, n: int) -> np.ndarray:  # (n,) share of each pixel inside [lo, hi)
        edges = np.arange(n)
        return np.clip(np.minimum(edges + 1, hi) - np.maximum(edges, lo), 0.0, 1.0)

    weight = np.outer(cover(top, bottom, heat.shape[0]), cover(left, right, heat.shape[1]))  # (H, W)
    return float((heat * weight).sum() / total)


def held_out_samples(ckpt, mels: torch.Tensor, pixels: torch.Tensor, clips, photos, pairs: list[tuple[int, int]],
                     n: int = SAMPLES) -> list[dict[str, torch.Tensor]]:
    """Up to ``n`` evenly spread (clip, photo) pairs, each with a typed command in a held-out phrasing."""
    from mbm.scenarios.voice_control.cached_runs import typed_commands

    chosen = [pairs[k] for k in np.linspace(0, len(pairs) - 1, min(n, len(pairs))).round().astype(int)]
    _, ids, usable, _ = typed_commands([(photos[j].device, clips[i].word) for i, j in chosen], ckpt.vocab,
                                       ckpt.config.text)
    return [{"audio": mels[i], "image": pixels[j], "text": ids[k]}
            for k, (i, j) in enumerate(chosen) if usable[k]]
