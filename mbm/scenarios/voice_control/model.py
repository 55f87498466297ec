"""The voice-control network: the shared :class:`mbm.model.MultimodalModel` with the spec's heads.

The encoders (log-mel CNN + GRU, a pixel CNN or EfficientNet-Lite0, token embeddings) and the evidence
fusion are the shared core's; what is voice control's own is the two heads (device, word: the spec's
labels), the text vocabulary's size and the photo size and backbone of the recipe.
"""

from __future__ import annotations

from dataclasses import replace

from mbm.config import EncoderConfig, FusionConfig, ModelConfig
from mbm.model import MultimodalModel
from mbm.scenarios.voice_control.spec import DEVICES, WORDS


def model_config(vocab_size: int, fusion: FusionConfig, image_backbone: str = "cnn",
                 image_size: int = 64) -> ModelConfig:
    """The model config of a voice-control network: a head per label set, band-normalised audio."""
    cfg = ModelConfig(heads={"device": len(DEVICES), "word": len(WORDS)})
    cfg.encoder = EncoderConfig(vocab_size=vocab_size, audio_band_norm=True)
    cfg.fusion = fusion
    cfg.encoder.image_backbone = image_backbone
    cfg.image = replace(cfg.image, size=image_size)
    return cfg


def build_model(cfg: ModelConfig) -> MultimodalModel:
    """The network a voice-control checkpoint's weights belong to (``Checkpoint.build_model``'s ``build``)."""
    return MultimodalModel(cfg)
