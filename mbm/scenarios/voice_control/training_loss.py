"""The voice-control model's training loss: cross-entropy of both heads (and of the action they make), the word
answer to speech alone kept close to stage 1's (distillation), and the modality weights pulled towards the
measured effect of removing each input."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mbm.config import TrainConfig
from mbm.model import MultimodalModel
from mbm.scenarios.voice_control.removal_loss import removal_effect_loss
from mbm.scenarios.voice_control.spec import action_index_matrix, action_probs


class VoiceControlLoss(nn.Module):
    """One training batch -> (loss, device loss, word loss); a module so that DDP can wrap it."""

    def __init__(self, model: MultimodalModel, train: TrainConfig, teacher: MultimodalModel | None = None):
        super().__init__()
        self.model, self.train_cfg, self.teacher = model, train, teacher
        self.register_buffer("action_index", torch.tensor(action_index_matrix()), persistent=False)

    def word_distillation(self, audio: torch.Tensor, word_logits: torch.Tensor | None = None) -> torch.Tensor:
        """KL(teacher || model) of the word answer to speech alone, (B, mels, F) clips; 0 without a teacher."""
        if self.teacher is None or not len(audio):
            return torch.zeros(())
        with torch.no_grad():
            target = self.teacher({"audio": audio}).logits["word"].log_softmax(-1)
        if word_logits is None:
            word_logits = self.model({"audio": audio}).logits["word"]
        kl = F.kl_div(word_logits.log_softmax(-1), target, log_target=True, reduction="batchmean")
        return self.train_cfg.word_distill * kl

    def forward(self, inputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                modality: str | None = None, present: dict[str, torch.Tensor] | None = None):
        """(loss, device loss, word loss) of a warm-up batch of one ``modality``, or of a fused batch."""
        model = self.model
        if modality is not None:  # warm-up: one input, the heads it carries
            output = model(inputs)
            heads = {"image": ("device",), "audio": ("word",), "text": ("device", "word")}[modality]
            losses = {h: F.cross_entropy(output.logits[h], targets[h], label_smoothing=0.05) for h in heads}
            loss = sum(losses.values())
            if modality == "audio":
                loss = loss + self.word_distillation(inputs["audio"], output.logits["word"])
            return loss, losses.get("device", loss), losses.get("word", loss)
        tokens = model.encode(inputs, present)
        fusion = model.fuse(tokens)
        logits = model.forward_head(fusion.fused)
        loss_device = F.cross_entropy(logits["device"], targets["device"], label_smoothing=0.05)
        loss_word = F.cross_entropy(logits["word"], targets["word"], label_smoothing=0.05)
        truth = self.action_index[targets["device"], targets["word"]]  # (B,) action ids

        def true_action_prob(head_logits: dict[str, torch.Tensor]) -> torch.Tensor:
            p = action_probs(head_logits["device"].softmax(-1), head_logits["word"].softmax(-1), self.action_index)
            return p.gather(1, truth[:, None])[:, 0]

        loss = loss_device + loss_word + 0.5 * -true_action_prob(logits).clamp_min(1e-8).log().mean()
        if "audio" in inputs:  # the same clips alone, as the word answer to speech alone is measured
            heard = present["audio"].bool() if present is not None and "audio" in present else slice(None)
            loss = loss + self.word_distillation(inputs["audio"][heard])
        if self.train_cfg.effect_weight > 0:
            # The modality weights should follow the measured effect of removing each input.
            loss = loss + self.train_cfg.effect_weight * removal_effect_loss(
                model, tokens, fusion.modality_weights, true_action_prob, temperature=self.train_cfg.effect_temperature)
        return loss, loss_device, loss_word
