"""Do the modality weights agree with what removing each modality does? Spearman rank correlation per sample,
and its mean: ``weight_effect_spearman`` of every scenario's faithfulness measure."""

from __future__ import annotations

import numpy as np
import torch

NOISE_SEED = 1  # the seed of the noise that stands in for a removed input, in every faithfulness measure


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation of two short vectors (average ranks for ties); None when undefined."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def spearman_per_sample(weights: torch.Tensor, drops: torch.Tensor) -> list[float | None]:
    """(N, M) weights and (N, M) drops -> the Spearman correlation of each sample (None where undefined)."""
    return [spearman(w.numpy(), d.numpy()) for w, d in zip(weights, drops)]


def mean_spearman(per_sample: list[float | None]) -> dict:
    """``{"weight_effect_spearman": mean of the defined ones (None if none), "weight_effect_spearman_n": count}``."""
    rhos = [r for r in per_sample if r is not None]
    return {"weight_effect_spearman": round(float(np.mean(rhos)), 4) if rhos else None,
            "weight_effect_spearman_n": len(rhos)}
