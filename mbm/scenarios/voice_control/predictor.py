"""The voice-control predictor: checkpoint in, plain-Python predictions out (app, API and tests).

    predictor = VoiceControlPredictor.from_checkpoint()
    result = predictor.predict(audio="up.wav", image="lamp.jpg", text=None)
    result.action, result.top, result.modality_weights
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from mbm.checkpoint import Checkpoint, load_checkpoint
from mbm.config import MODALITIES
from mbm.paths import CHECKPOINTS as CHECKPOINT_DIR
from mbm.preprocess import (
    AudioInput,
    ImageInput,
    InputError,
    TextInput,
    encode_text,
    prepare_audio,
    prepare_image,
    read_audio,
    read_image,
)
from mbm.scenarios.voice_control.model import build_model
from mbm.scenarios.voice_control.spec import action_probs


@dataclass
class PreparedInputs:
    """What the model sees, per modality (None = absent), and notes for the user."""

    audio: AudioInput | None = None
    image: ImageInput | None = None
    text: TextInput | None = None
    warnings: list[str] = field(default_factory=list)  # inputs that could not be used, and why
    notes: list[str] = field(default_factory=list)  # what preprocessing changed
    no_device: bool = False  # a photo was given but shows no device (it was then left out)

    @property
    def present(self) -> list[str]:
        return [m for m in MODALITIES if getattr(self, m) is not None]


@dataclass
class VoiceControlResult:
    """One voice-control prediction, as plain Python values."""

    action: str  # e.g. "lamp → brighter" or "not supported"
    confidence: float
    top: list[tuple[str, float]]  # top-5 actions with probabilities
    device: tuple[str, float]  # fused prediction of the device
    word: tuple[str, float]  # fused prediction of the command word
    modality_weights: dict[str, float]  # audio / image / text; sum to 1, absent = 0
    token_weights: dict[str, list[float]]  # present modality -> where inside it the model looked
    heard: tuple[str, float] | None  # word from the audio alone
    sees: tuple[str, float] | None  # device from the image alone
    reads: dict[str, tuple[str, float]] | None  # device and word from the text alone
    confidence_without: dict[str, float]  # present modality -> p(action) when it is removed
    inputs: PreparedInputs
    warnings: list[str]
    # The within-input maps the app draws, per token like token_weights: the attention weights, or
    # (mbm.scenarios.voice_control.maps.with_occlusion_maps) p(action) lost when each unit is masked; map_kind says which.
    maps: dict[str, list[float]] = field(default_factory=dict)
    map_kind: str = "attention"
    # True: the photo shows a device; False: "no device recognised" (the photo was left out of the
    # fusion as uninformative); None: no photo given
    device_recognised: bool | None = None
    heard_runner_up: tuple[str, float] | None = None  # the second word from the audio alone

    def __post_init__(self):
        if not self.maps:
            self.maps = dict(self.token_weights)

    def summary(self) -> str:
        """One line on what each input contributed, e.g. "heard: 'up' (0.97) · sees: lamp (0.88)"."""
        parts = []
        if self.heard:
            parts.append(f"heard: '{self.heard[0]}' ({self.heard[1]:.2f})")
        if self.sees:
            parts.append(f"sees: {self.sees[0]} ({self.sees[1]:.2f})")
        elif self.device_recognised is False:
            parts.append("sees: no device recognised")
        if self.reads:
            parts.append("reads: " + ", ".join(f"{v[0]} ({v[1]:.2f})" for v in self.reads.values()))
        return " · ".join(parts)

    def to_json(self) -> dict:
        """JSON-ready dict (what the API returns)."""
        return {
            "action": self.action, "confidence": round(self.confidence, 4),
            "top": [{"label": a, "confidence": round(p, 4)} for a, p in self.top],
            "device": {"label": self.device[0], "confidence": round(self.device[1], 4)},
            "word": {"label": self.word[0], "confidence": round(self.word[1], 4)},
            "modality_weights": {m: round(w, 4) for m, w in self.modality_weights.items()},
            "heard": _pair(self.heard), "heard_runner_up": _pair(self.heard_runner_up), "sees": _pair(self.sees),
            "reads": {k: _pair(v) for k, v in self.reads.items()} if self.reads else None,
            "confidence_without": {m: round(p, 4) for m, p in self.confidence_without.items()},
            "tokens": self.inputs.text.tokens if self.inputs.text else None,
            "token_weights": {m: [round(x, 4) for x in w] for m, w in self.token_weights.items()},
            "maps": {m: [round(x, 4) for x in w] for m, w in self.maps.items()}, "map_kind": self.map_kind,
            "summary": self.summary(), "warnings": self.warnings, "notes": self.inputs.notes,
            "device_recognised": self.device_recognised,
        }


def _pair(p):
    return None if p is None else {"label": p[0], "confidence": round(p[1], 4)}


class Predictor:
    """Checkpoint, model and raw-input preparation for a predictor whose model reads audio, pixels and
    token ids (voice control; portrait and retrieval read pretrained embeddings and have their own)."""

    scenario = ""

    def __init__(self, ckpt: Checkpoint):
        self.ckpt = ckpt
        self.cfg = ckpt.config
        self.model = ckpt.build_model(build_model)
        self.labels = ckpt.labels

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None):
        """Load ``path`` (default: the shipped ``checkpoints/<scenario>.pt``)."""
        return cls(load_checkpoint(path or CHECKPOINT_DIR / f"{cls.scenario}.pt", cls.scenario))

    def prepare(self, audio=None, image=None, text: str | None = None) -> PreparedInputs:
        """Preprocess each given input; unusable ones become warnings instead of inputs."""
        prepared = PreparedInputs()
        if audio is not None:
            try:
                samples, sr = read_audio(audio)
                clip = prepare_audio(samples, sr, self.cfg.audio)
                if clip.silent:
                    prepared.warnings.append("audio: the recording is silent, so it was ignored")
                else:
                    prepared.audio = clip
                    prepared.notes += [f"audio: {n}" for n in clip.notes]
            except InputError as e:
                prepared.warnings.append(f"audio: {e}")
        if image is not None:
            try:
                img = prepare_image(read_image(image, self.cfg.image), self.cfg.image)
                flat = "the image is a flat colour" in img.notes
                rejected = None if flat else self._no_device(img)  # a flat colour needs no backbone pass
                if flat:
                    prepared.no_device = True
                    prepared.warnings.append("image: the image is a single flat colour, so it was ignored "
                                             "(no device recognised)")
                elif rejected:
                    prepared.no_device = True
                    prepared.warnings.append(f"image: no device recognised in the photo ({rejected}), so it "
                                             "was ignored")
                else:
                    prepared.image = img
                    prepared.notes += [f"image: {n}" for n in img.notes]
            except InputError as e:
                prepared.warnings.append(f"image: {e}")
        if text is not None:
            try:
                txt = encode_text(text, self.ckpt.vocab, self.cfg.text)
                if txt is not None:
                    prepared.text = txt
                    prepared.notes += [f"text: {n}" for n in txt.notes]
            except InputError as e:
                prepared.warnings.append(f"text: {e}")
        if not prepared.present:
            reason = "; ".join(prepared.warnings) if prepared.warnings else "no input was given"
            raise InputError(f"Nothing usable to predict from ({reason}). Give a spoken command, a photo "
                             "of the device, or a typed command.")
        return prepared

    @torch.inference_mode()
    def _no_device(self, img) -> str | None:
        """Why the photo shows no device (the presence detector of a pretrained image encoder), or None."""
        encoder = self.model.encoders["image"] if "image" in getattr(self.model, "encoders", {}) else None
        if not hasattr(encoder, "recognise"):
            return None
        verdict = encoder.recognise(img.pixels[None])
        if bool(verdict["accepted"][0]):
            return None
        return (f"device presence {float(verdict['presence'][0]):.2f} < "
                f"{float(encoder.presence.threshold):.2f}")

    def batch(self, prepared: PreparedInputs) -> dict[str, torch.Tensor]:
        """The prepared inputs as a batch of one."""
        inputs: dict[str, torch.Tensor] = {}
        if prepared.audio is not None:
            inputs["audio"] = prepared.audio.mel[None]  # (1, n_mels, F)
        if prepared.image is not None:
            inputs["image"] = prepared.image.pixels[None]  # (1, 3, S, S)
        if prepared.text is not None:
            inputs["text"] = prepared.text.ids[None]  # (1, L)
        return inputs


class VoiceControlPredictor(Predictor):
    """Spoken command + device photo + optional typed command -> device action."""

    scenario = "voice_control"

    def __init__(self, ckpt: Checkpoint):
        super().__init__(ckpt)
        self.actions: list[str] = list(ckpt.extra["actions"])
        self.action_index = torch.tensor(ckpt.extra["action_index"])

    @torch.inference_mode()
    def predict(self, audio=None, image=None, text: str | None = None) -> VoiceControlResult:
        """Predict the action from any subset of the three inputs.

        Args:
            audio: a file path, bytes or ``(sample_rate, samples)``; None if absent.
            image: a file path, bytes, PIL image or HxWxC array; None if absent.
            text: a typed command; None or blank if absent.
        Raises:
            InputError: no input is usable (the message says why).
        """
        prep = self.prepare(audio, image, text)
        present = tuple(prep.present)
        # Row 0: every input; then each input alone; then each input left out (if 2+ inputs).
        subsets = [present] + [(m,) for m in present]
        if len(present) > 1:
            subsets += [tuple(x for x in present if x != m) for m in present]
        out = self.model.forward_subsets(self.batch(prep), subsets)
        p_device = out.logits["device"].softmax(-1)  # (rows, n_devices)
        p_word = out.logits["word"].softmax(-1)  # (rows, n_words)
        p_action = action_probs(p_device, p_word, self.action_index)  # (rows, n_actions)

        best = int(p_action[0].argmax())
        order = p_action[0].argsort(descending=True)[:5].tolist()
        devices, words = self.labels["device"], self.labels["word"]

        def top1(probs, names, rank: int = 0):
            i = int(probs.argsort(descending=True)[rank])
            return names[i], float(probs[i])

        alone = {m: 1 + i for i, m in enumerate(present)}
        heard = top1(p_word[alone["audio"]], words) if "audio" in alone else None
        sees = top1(p_device[alone["image"]], devices) if "image" in alone else None
        reads = None
        if "text" in alone:
            reads = {"device": top1(p_device[alone["text"]], devices), "word": top1(p_word[alone["text"]], words)}
        without = {}
        if len(present) > 1:
            for i, m in enumerate(present):
                without[m] = float(p_action[1 + len(present) + i, best])
        weights = {m: float(w) for m, w in zip(self.model.modalities, out.modality_weights[0])}
        return VoiceControlResult(
            action=self.actions[best], confidence=float(p_action[0, best]),
            top=[(self.actions[i], float(p_action[0, i])) for i in order],
            device=top1(p_device[0], devices), word=top1(p_word[0], words),
            modality_weights=weights,
            token_weights={m: out.token_weights[m][0].tolist() for m in present},
            heard=heard, sees=sees, reads=reads, confidence_without=without,
            inputs=prep, warnings=list(prep.warnings),
            device_recognised=False if prep.no_device else True if "image" in present else None,
            heard_runner_up=top1(p_word[alone["audio"]], words, rank=1) if "audio" in alone else None)
