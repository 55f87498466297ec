"""Measured faithfulness of the portrait scenario's modality weights (printed by ``mbm.evaluate --scenario portrait``).

The same two metrics as voice control (:mod:`mbm.scenarios.voice_control.faithfulness`), on portrait queries.
"""

from __future__ import annotations

import numpy as np
import torch

from mbm.agreement import NOISE_SEED, mean_spearman, spearman_per_sample
from mbm.config import MODALITIES

PORTRAIT_NAMES = {"audio": "voice", "image": "face", "text": "profile"}


@torch.inference_mode()
def faithfulness_portrait(model, gallery, q, truth: list[str], seed: int = NOISE_SEED) -> dict:
    """``weight_effect_spearman`` and ``noised_weight_drop`` for the portrait scenario.

    Samples: the fused queries of ``evaluate_portrait`` (known people: face photo, a voice clip of
    their composed speaker, a profile hint) that have all three modalities. The confidence in a
    person is ``softmax(2 * scores)`` over the gallery (as ``PortraitPredictor`` reports it).

    - ``weight_effect_spearman``: per sample, Spearman rank correlation between the three modality
      weights and the drops in the true person's confidence when each modality is removed (masked
      as absent), averaged over samples (undefined samples, all weights or all drops equal, skipped).
    - ``noised_weight_drop``: per modality, relative drop of its mean weight when its embedding is
      replaced by a random unit vector (the others clean), averaged over the three modalities.
    """
    from mbm.scenarios.portrait.engine import Queries, gallery_tensors
    from mbm.scenarios.portrait.engine import fuse as portrait_fuse

    g = gallery_tensors(gallery)
    present = q.present or {}
    full = torch.ones(q.batch(), dtype=torch.bool)
    allp = full.clone()
    for m in MODALITIES:
        allp &= present.get(m, full)
    idx = torch.nonzero(allp).flatten()
    out: dict = {"faithfulness_n": len(idx)}
    if not len(idx) or not len(g.names):
        return out
    truth_ix = torch.tensor([g.names.index(truth[i]) for i in idx.tolist()])
    base = {"face": q.face[idx], "face_quality": q.face_quality[idx] if q.face_quality is not None else None,
            "voice": q.voice[idx], "profile": q.profile[idx]}
    field = {"audio": "voice", "image": "face", "text": "profile"}
    ones = torch.ones(len(idx), dtype=torch.bool)

    def run(replace: dict | None = None, drop: str | None = None):
        kw = dict(base, **(replace or {}))
        pres = {m: (~ones if m == drop else ones) for m in MODALITIES}
        o = portrait_fuse(model, Queries(**kw, present=pres), g)
        return torch.softmax(2.0 * o.scores, 1).gather(1, truth_ix[:, None])[:, 0], o.modality_weights

    p_all, w_all = run()
    drops = torch.stack([p_all - run(drop=m)[0] for m in MODALITIES], 1)  # (N, 3)
    out.update(mean_spearman(spearman_per_sample(w_all, drops)))
    out["mean_drop_p_true_without"] = {PORTRAIT_NAMES[m]: round(float(x), 4) for m, x in zip(MODALITIES, drops.mean(0))}
    gen = torch.Generator().manual_seed(seed)
    rel = {}
    for k, m in enumerate(MODALITIES):
        x = base[field[m]]
        noise = torch.randn(x.shape, generator=gen)
        _, w_noise = run(replace={field[m]: noise / noise.norm(dim=1, keepdim=True)})
        clean, noised = float(w_all[:, k].mean()), float(w_noise[:, k].mean())
        rel[PORTRAIT_NAMES[m]] = {"clean": round(clean, 4), "noised": round(noised, 4),
                                  "relative_drop": round((clean - noised) / clean, 4) if clean > 0 else None}
    vals = [v["relative_drop"] for v in rel.values() if v["relative_drop"] is not None]
    out["noised_weight_drop"] = round(float(np.mean(vals)), 4) if vals else None
    out["noised_weight_drop_by_modality"] = rel
    return out
