"""Measured effect beside each attention weight, and a flag when the two disagree.

An attention weight says how much of the fused representation came from a
modality; it does not by itself say how much the prediction depends on it. The
predictor measures that directly: ``VoiceControlResult.confidence_without[m]``
is p(predicted action) with modality ``m`` removed (the others kept). This module
turns it into per-modality effects and checks that the two orders agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from mbm import figures, viz

WEIGHT_MARGIN = 0.05  # weights closer than this count as tied
EFFECT_MARGIN = 0.05  # confidence drops closer than this count as tied


@dataclass
class ModalityEffects:
    """Per present modality: attention weight, confidence without it, and the drop."""

    weights: dict[str, float]  # present modality -> attention weight
    confidence: float  # p(predicted action) with every present modality
    without: dict[str, float]  # present modality -> p(predicted action) without it
    drop: dict[str, float]  # present modality -> confidence - without (negative: it was hurting)
    disagree: bool  # see ``disagreement``
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (a, b): w_a > w_b but drop_a < drop_b

    def to_json(self) -> dict:
        r = lambda d: {k: round(float(v), 4) for k, v in d.items()}
        return {"weights": r(self.weights), "confidence": round(float(self.confidence), 4),
                "confidence_without": r(self.without), "drop": r(self.drop), "disagree": self.disagree,
                "disagreeing_pairs": [list(p) for p in self.pairs],
                "margins": {"weight": WEIGHT_MARGIN, "effect": EFFECT_MARGIN}}


def disagreement(weights: dict[str, float], drops: dict[str, float], weight_margin: float = WEIGHT_MARGIN,
                 effect_margin: float = EFFECT_MARGIN) -> tuple[bool, list[tuple[str, str]]]:
    """Does the order of the weights disagree with the order of the measured effects?

    Definition: over the modalities present in both dicts, a pair (a, b)
    *disagrees* when the weights put a clearly above b while the effects put it
    clearly below::

        weights[a] - weights[b] > weight_margin   and   drops[b] - drops[a] > effect_margin

    The flag is True when at least one pair disagrees. Differences within a
    margin count as ties and never fire the flag (so small noise in either does
    not), and with fewer than two modalities there is no order and no flag.

    Returns:
        ``(flag, pairs)``, pairs as (higher-weighted, more-effective) names.
    """
    names = [m for m in weights if m in drops]
    pairs = [(a, b) for a in names for b in names
             if weights[a] - weights[b] > weight_margin and drops[b] - drops[a] > effect_margin]
    return bool(pairs), pairs


def modality_effects(result) -> ModalityEffects:
    """Effects of a ``VoiceControlResult``: drop in p(predicted action) when each present modality is removed.

    ``drop[m] = result.confidence - result.confidence_without[m]``. With one
    modality there is nothing to remove (``without`` and ``drop`` are empty and
    the flag is False).
    """
    without = dict(result.confidence_without)
    weights = {m: float(result.modality_weights[m]) for m in without}
    if not without:  # one modality: report its weight, no effect measurable
        weights = {m: float(w) for m, w in result.modality_weights.items() if w > 0}
    drop = {m: float(result.confidence) - float(p) for m, p in without.items()}
    flag, pairs = disagreement(weights, drop)
    return ModalityEffects(weights=weights, confidence=float(result.confidence), without=without, drop=drop,
                           disagree=flag, pairs=pairs)


def effects_table(effects: ModalityEffects) -> list[list]:
    """Rows ``[modality, weight, confidence without, drop]`` for a gr.Dataframe (3 decimals)."""
    return [[m, round(effects.weights[m], 3), round(effects.without.get(m, float("nan")), 3),
             round(effects.drop.get(m, float("nan")), 3)] for m in effects.weights]


def flag_text(effects: ModalityEffects) -> str:
    """One line for the UI: the measured effects, and a visible warning when the orders disagree."""
    if not effects.drop:
        return "Only one input: there is nothing to remove, so no effect can be measured."
    parts = " · ".join(f"without {m}: {effects.without[m]:.2f} ({-effects.drop[m]:+.2f})" for m in effects.drop)
    if effects.disagree:
        why = "; ".join(f"{a} weighs more than {b}, but removing {b} costs more" for a, b in effects.pairs)
        return f"⚠ The weights disagree with the measured effects ({why}). {parts}"
    return f"✓ The weights agree with the measured effects. {parts}"


def explain_prediction(result) -> dict:
    """Everything the app shows beside a voice-control prediction, computed once.

    Returns a dict of ready values (absent modality -> None):
        ``figure``: aligned explanation Figure (gr.Plot);
        ``image_overlay``: (4S, 4S, 3) uint8 heatmap over the crop (gr.Image);
        ``text_highlights``: [(token, weight)] with " " separators (gr.HighlightedText);
        ``audio_figure``: waveform + log-mel + attention Figure (gr.Plot);
        ``weights_figure``: weights beside measured drops, with the flag in the title (gr.Plot);
        ``effects``: ModalityEffects; ``effects_table``: rows for gr.Dataframe; ``flag``: bool; ``flag_text``: str;
        ``model_view``: the preprocessed inputs (see ``mbm.viz.model_view``);
        ``json``: the raw numbers (prediction, effects, maps) for gr.JSON / the API.
    """
    effects = modality_effects(result)
    inp = result.inputs
    tw = result.maps
    return {
        "figure": figures.explanation_figure(result, effects),
        "image_overlay": viz.image_overlay(inp.image.shown, tw["image"]) if inp.image is not None and "image" in tw
        else None,
        "text_highlights": viz.text_highlights(inp.text.tokens, tw["text"], separator=" ")
        if inp.text is not None and "text" in tw else None,
        "audio_figure": viz.audio_figure(inp.audio.waveform, inp.audio.mel, tw["audio"])
        if inp.audio is not None and "audio" in tw else None,
        "weights_figure": figures.weights_figure(result.modality_weights, effects),
        "effects": effects, "effects_table": effects_table(effects), "flag": effects.disagree,
        "flag_text": flag_text(effects), "model_view": viz.model_view(result),
        "json": report_data(result, effects),
    }


def _rounded(x):
    if isinstance(x, np.ndarray):
        return np.round(x.astype(float), 4).tolist()
    return x


def report_data(result, effects=None) -> dict:
    """The raw numbers of the report card (JSON-ready)."""
    effects = effects or modality_effects(result)
    m = viz.maps(result)
    return {
        "prediction": result.to_json(),
        "effects": effects.to_json(),
        "maps": {
            "kind": result.map_kind,
            "image_grid": _rounded(viz.image_attention_grid(result.maps.get("image"))),
            "text": m["text"],
            "audio_frames": _rounded(m["audio"]),
        },
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
