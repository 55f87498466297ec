"""The shipped checkpoint's inputs combined as a product of experts at inference, without retraining.

    PYTHONPATH=. python tools/experiments/text_scripts/experts_posthoc.py MODE CHECKPOINT DATA [--cut-text]

Each head answers each input's pooled vector alone and the answers' log-probabilities are combined, in place
of the heads reading the weighted mean of the vectors; then ``confidence_by_subset.py`` runs on the result
(accuracy and p(true action) per input subset, the weights-vs-effects Spearman, the deletion drops). MODE:
``geo`` sum_m w_m log p_m (a weighted geometric mean: the weights sum to 1), ``sum`` sum_m log p_m (the
product of experts), ``wsum`` sum_m P w_m log p_m (P inputs present: the product, each vote scaled by its
weight). The gate and its evidence are the checkpoint's own. A test of stop 38's reading that the mean
dilutes agreeing inputs (docs/history.md, "Stop 39").
"""

import runpy
import sys

import torch

from mbm.fusion import AttentionFusion
from mbm.model import MultimodalModel

MODES = ("geo", "sum", "wsum")
weigh, forward_head = AttentionFusion._weigh_modalities, MultimodalModel.forward_head


def weigh_and_keep(self, pooled_all, has, token_weights, present, evidence):
    """The fusion as it is, keeping the pooled vectors (B, P, D) and the present inputs' weights (B, P)."""
    out = weigh(self, pooled_all, has, token_weights, present, evidence)
    w = torch.stack([out.modality_weights[:, self.modalities.index(m)] for m in present], 1)  # (B, P)
    self.kept = (out.fused, pooled_all, has, w)
    return out


def experts(self, fused):
    """The heads on each pooled vector, combined per MODE; the plain heads on any other vector (the probe)."""
    kept, self.fusion.kept = getattr(self.fusion, "kept", None), None
    if kept is None or kept[0] is not fused:
        return forward_head(self, fused)
    _, pooled, has, w = kept
    b, p, d = pooled.shape
    each = forward_head(self, pooled.reshape(b * p, d))  # head -> (B * P, C)
    present = has.to(pooled.dtype)
    coef = {"geo": w, "sum": present, "wsum": w * present.sum(1, keepdim=True)}[MODE]  # (B, P)
    return {h: (x.log_softmax(-1).reshape(b, p, -1) * coef[:, :, None]).sum(1) for h, x in each.items()}


if len(sys.argv) < 4 or sys.argv[1] not in MODES:
    raise SystemExit(__doc__)
MODE = sys.argv.pop(1)
AttentionFusion._weigh_modalities = weigh_and_keep
MultimodalModel.forward_head = experts
runpy.run_path("tools/experiments/text_scripts/confidence_by_subset.py", run_name="__main__")
