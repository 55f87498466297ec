"""The trained voice-control model as it is evaluated, saved and served: float32, the same buffers on every rank,
the fusion's exact evidence where the recipe asks for it, and its checkpoint (labels, vocabulary, the action table,
the pretrained image backbone's provenance)."""

from __future__ import annotations

import torch.distributed as dist

from mbm.checkpoint import Checkpoint
from mbm.config import ModelConfig, TrainConfig
from mbm.model import MultimodalModel
from mbm.scenarios.voice_control.data import KEPT_APART_SOURCES
from mbm.scenarios.voice_control.spec import ACTIONS, DEVICES, WORDS, action_index_matrix


def finish_training(model: MultimodalModel, cfg: ModelConfig, train: TrainConfig) -> None:
    """The trained model as it is evaluated, saved and served: float32, rank 0's buffers, and the fusion's
    exact evidence (re-attention, evidence gain) where the recipe asks for it."""
    model.encoder_autocast = None  # evaluated, saved and served in float32
    if dist.is_initialized():
        # DDP hands rank 0's buffers (BatchNorm statistics) to every rank before each forward; the
        # last step's update is still per rank, so hand them over once more.
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
    if train.reattend_after_training:
        # Trained on the cheap evidence; evaluated and served with the exact one (attention re-run
        # without each input). The weights are the same; only how the gate's evidence is measured changes.
        cfg.fusion.evidence_reattend = True
        model.fusion.reattend = True
    if train.evidence_gain_after_training:
        # The gate was trained alone; the checkpoint adds gain x the whole answer's measured loss
        # without each input to its scores (mbm.fusion, FusionConfig.evidence_gain).
        cfg.fusion.evidence_gain = model.fusion.evidence_gain = train.evidence_gain_after_training


def trained_checkpoint(model: MultimodalModel, cfg: ModelConfig, vocab: dict, image_fit: dict | None) -> Checkpoint:
    """The checkpoint of the trained model: labels, vocabulary, the action table, and the pretrained image
    backbone's provenance (where one is used)."""
    ckpt = Checkpoint(scenario="voice_control", config=cfg, labels={"device": list(DEVICES), "word": list(WORDS)},
                      vocab=vocab, extra={"actions": list(ACTIONS), "action_index": action_index_matrix()},
                      state_dict=model.state_dict())
    if image_fit is not None:
        from mbm.features.efficientnet import BACKBONE, REQUIREMENT, RESOURCE, SHA256

        ckpt.extra["image_backbone"] = {
            "name": BACKBONE, "weights": f"{REQUIREMENT} {'/'.join(RESOURCE)}",
            "sha256": SHA256, "frozen": "stem .. stage 5 (from the package)",
            "fine_tuned": "stage 6, conv_head + BatchNorm, classifier (in this checkpoint)",
            "preprocessing": f"RGB, shorter side {cfg.image.size}, centre crop, min-max "
            "to [-0.5, 0.5], then (x * 255 + 0.5) / 128 into EfficientNet-Lite0 ((RGB - 127) / 128)", "fit": image_fit,
            "kept_apart_sources": list(KEPT_APART_SOURCES)}
    return ckpt
