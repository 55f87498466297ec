"""Configuration dataclasses: preprocessing, encoders, fusion, model, training.

Each field maps one to one onto a key of the checkpoint's ``config`` dict, so a
checkpoint rebuilds exactly the model (and the preprocessing) it was trained with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

MODALITIES = ("audio", "image", "text")  # sorted; the order of every per-modality output


@dataclass
class AudioConfig:
    sample_rate: int = 16000  # every clip is resampled to this rate, mono
    clip_seconds: float = 1.0  # the model's window: longer clips are cut to their loudest second
    n_fft: int = 512  # FFT size (32 ms at 16 kHz)
    win_length: int = 400  # analysis window (25 ms)
    hop_length: int = 160  # frame step (10 ms) -> 101 frames per second
    n_mels: int = 40  # mel bands
    f_min: float = 20.0
    f_max: float = 4000.0  # cut at 4 kHz so 8 kHz (FSDD, phone) and 16 kHz clips look alike
    top_db: float = 80.0  # dynamic range kept before min-max normalisation
    silence_rms: float = 5e-4  # a clip whose loudest 25 ms frame is quieter than this is "silent"

    @property
    def num_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)

    @property
    def num_frames(self) -> int:
        return self.num_samples // self.hop_length + 1


@dataclass
class ImageConfig:
    size: int = 64  # square side after resize-shorter-side + centre crop
    max_pixels: int = 100_000_000  # larger images are refused (decompression-bomb guard); 50 MP photos pass


@dataclass
class TextConfig:
    max_tokens: int = 16  # longer texts are truncated (and the user told)


@dataclass
class EncoderConfig:
    dim: int = 64  # token width D shared by all encoders and the fusion block
    image_channels: tuple[int, ...] = (32, 48, 96)  # stem + CNN stages, each halves the resolution
    image_convs: int = 2  # 3x3 convolutions per image stage (after the stem)
    audio_channels: tuple[int, ...] = (32, 64, 64)  # CNN stages before the GRU
    audio_band_norm: bool = False  # subtract each mel band's mean over time (speaker/channel robustness)
    # "cnn": the from-scratch CNN above (stage 1); "efficientnet_lite0": the pretrained EfficientNet-Lite0
    # of mbm.features (trunk weights from their package, checked by sha256, not stored in the checkpoint)
    image_backbone: str = "cnn"
    vocab_size: int = 128  # text vocabulary incl. <pad>=0 and <unk>=1
    dropout: float = 0.1


@dataclass
class FusionConfig:
    heads: int = 4  # heads of the cross-modal attention layer
    # "tokens": one softmax over every token, a modality's weight = its tokens' share (portrait);
    # "evidence": pool inside each modality, then a gate that sees how much a quick prediction loses
    # without each modality weighs them (voice control). See mbm.fusion.
    pooling: str = "evidence"
    evidence_reattend: bool = False  # evidence: re-run the cross-modal attention without each modality
    # evidence: add gain x (what the quick prediction's whole answer loses without m) to m's gate score
    evidence_gain: float = 0.0
    ffn_mult: int = 2  # hidden width of the feed-forward layer, as a multiple of dim
    dropout: float = 0.1

    def validate(self) -> None:
        """Raise ValueError for a pooling that does not exist or a gate option its pooling does not use."""
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown fusion pooling {self.pooling!r}; expected one of {', '.join(POOLINGS)}")
        if self.evidence_reattend and self.pooling != "evidence":
            raise ValueError("re-running the attention for the evidence needs evidence pooling")
        if self.evidence_gain < 0:
            raise ValueError(f"the evidence gain must be >= 0, got {self.evidence_gain}")
        if self.evidence_gain and self.pooling != "evidence":
            raise ValueError("an evidence gain needs evidence pooling")


POOLINGS = ("tokens", "evidence")  # FusionConfig.pooling, see mbm.fusion


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model (and its preprocessing)."""

    heads: dict[str, int] = field(default_factory=lambda: {"device": 7, "word": 20})  # head -> classes
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    text: TextConfig = field(default_factory=TextConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        sub = {"encoder": EncoderConfig, "fusion": FusionConfig, "audio": AudioConfig,
               "image": ImageConfig, "text": TextConfig}
        _check_keys(cls, d)
        kwargs = {}
        for f in fields(cls):
            value = d[f.name]
            if f.name in sub:
                value = _build(sub[f.name], value)
            kwargs[f.name] = value
        return cls(**kwargs)


def _check_keys(klass, d: dict) -> None:
    """Every field of ``klass`` present in ``d`` and nothing else: a ValueError naming the odd key."""
    if not isinstance(d, dict):
        raise ValueError(f"checkpoint config: {klass.__name__} must be a dict, got {type(d).__name__}")
    names = {f.name for f in fields(klass)}
    missing, unknown = sorted(names - set(d)), sorted(set(d) - names)
    if missing:
        raise ValueError(f"checkpoint config: {klass.__name__} lacks {', '.join(missing)}")
    if unknown:
        raise ValueError(f"unknown {klass.__name__} fields in checkpoint config: {unknown}")


def _build(klass, d: dict):
    _check_keys(klass, d)
    return klass(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 2200  # optimiser steps
    batch_size: int = 64
    lr: float = 3e-3  # peak learning rate (one-cycle)
    weight_decay: float = 1e-2
    modality_keep: float = 0.7  # chance each modality is present in a training sample
    text_keep: float = 0.3  # text is optional in the scenario, so it is present less often
    noise_modality: float = 0.1  # chance a present modality is replaced by noise (labels unchanged)
    word_dropout: float = 0.15  # chance each typed word is replaced by <unk>
    unsupported_share: float = 0.1  # share of training commands outside the action table
    tts_per_word: int = 450  # synthetic clips per command word
    tts_seed: int | None = None  # which voices, speeds and pitches the synthetic clips get (None = seed)
    real_share: float = 0.3  # chance a clip is drawn from the real recordings of its word (they are few)
    effect_weight: float = 0.0  # weight of mbm.scenarios.voice_control.removal_loss.removal_effect_loss (weights = softmax(effects))
    effect_temperature: float = 0.2  # temperature of that loss's target
    warmup_share: float = 0.35  # first share of steps: unimodal batches (one encoder each), then fusion
    reattend_after_training: bool = False  # evidence pooling: the checkpoint measures evidence exactly (mbm.fusion)
    evidence_gain_after_training: float = 0.0  # evidence pooling: the checkpoint's FusionConfig.evidence_gain
    precision: str = "fp32"  # "bf16": encoders run under bfloat16 autocast in training (inference stays float32)
    image_backbone: str = "cnn"  # EncoderConfig.image_backbone: "cnn" or "efficientnet_lite0" (mbm.features)
    image_size: int = 64  # ImageConfig.size the model is trained (and served) at
    image_views: int = 4  # efficientnet_lite0: cached versions of each training photo (1 plain + augmented)
    init_from: str = ""  # a checkpoint whose weights of the same name and shape start the training (warm start)
    word_distill: float = 0.0  # weight of a KL term keeping init_from's word answer to speech alone
