"""Pure preprocessing: raw image / text / audio -> model tensors (+ what the model sees).

Min-max normalisation, scaling and cropping.

- audio: decode, mono, resample to one rate, cut to the loudest window or pad,
  log-mel in dB, min-max to [0, 1] over a fixed dynamic range;
- image: decode safely, orient, RGB, resize the shorter side and centre-crop to
  a square, min-max normalise;
- text: normalise and tokenise into a fixed vocabulary.

Every function raises :class:`InputError` (a ValueError) with a message a user
can act on when the input cannot be used.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from mbm.config import AudioConfig, ImageConfig, TextConfig
from mbm.errors import InputError  # re-exported: every input check raises it
from mbm.safe_media import mono_at, pcm_to_float
from mbm.safe_media import read_audio as read_any_audio

MAX_AUDIO_SECONDS = 30.0  # longer recordings are cut here before the loudest window is searched
MIN_IMAGE_SIDE = 8  # pixels; smaller images carry nothing the model can see
MAX_TEXT_CHARS = 1000
PAD, UNK = "<pad>", "<unk>"


# --- Audio -------------------------------------------------------------------------------------

@dataclass
class AudioInput:
    """A clip ready for the audio encoder."""

    mel: torch.Tensor  # (n_mels, frames), values in [0, 1]
    waveform: np.ndarray  # (num_samples,) the exact window the model heard
    silent: bool  # True when the window holds no speech energy at all
    notes: list[str] = field(default_factory=list)  # what preprocessing changed, for the user


def read_audio(source) -> tuple[np.ndarray, int]:
    """Decode an audio file path, bytes or ``(sample_rate, array)`` tuple (:func:`mbm.safe_media.read_audio`,
    at most :data:`MAX_AUDIO_SECONDS`).

    Files go through :func:`mbm.safe_media.decode_audio`: the container is recognised from its magic
    bytes and only an allow-list is decoded (FFmpeg gets the bytes on stdin, file and network
    protocols off); playlists and file references are refused.

    Returns:
        ``(samples, sample_rate)`` with samples float32 of shape (frames, channels).
    """
    return read_any_audio(source, MAX_AUDIO_SECONDS)


def prepare_audio(samples: np.ndarray, sample_rate: int, cfg: AudioConfig) -> AudioInput:
    """Mono, resample, pick the model's window, log-mel. See the module docstring."""
    mono, notes = fit_window(samples, sample_rate, cfg)
    silent = loudest_frame_rms(mono, cfg.win_length) < cfg.silence_rms
    if silent:
        notes.append("the recording is silent")
    mel = log_mel(torch.from_numpy(mono)[None], cfg)[0]
    return AudioInput(mel=mel, waveform=mono, silent=silent, notes=notes)


def fit_window(samples: np.ndarray, sample_rate: int, cfg: AudioConfig) -> tuple[np.ndarray, list[str]]:
    """Samples (frames[, channels]) -> mono float32 window of ``cfg.num_samples`` at ``cfg.sample_rate``.

    Returns:
        ``(window, notes)``; notes say what was changed (mixed down, resampled, cut).
    """
    notes: list[str] = []
    samples = pcm_to_float(np.asarray(samples))
    max_len = int(MAX_AUDIO_SECONDS * max(sample_rate, 1))
    if samples.shape[0] > max_len:
        samples = samples[:max_len]
        notes.append(f"audio longer than {MAX_AUDIO_SECONDS:.0f} s: only the start was used")
    mono = mono_at(samples, sample_rate, cfg.sample_rate)
    if samples.shape[1] > 1:
        notes.insert(0, f"mixed {samples.shape[1]} channels to mono")
    if sample_rate != cfg.sample_rate:
        notes.append(f"resampled {sample_rate} Hz -> {cfg.sample_rate} Hz")
    window = cfg.num_samples
    if len(mono) > window:
        start = loudest_window_start(mono, window, cfg.hop_length)
        mono = mono[start:start + window]
        notes.append(f"kept the loudest {cfg.clip_seconds:g} s (from {start / cfg.sample_rate:.2f} s)")
    else:
        left = (window - len(mono)) // 2
        mono = np.pad(mono, (left, window - len(mono) - left))
    return mono.astype(np.float32, copy=False), notes


def loudest_frame_rms(mono: np.ndarray, frame: int) -> float:
    """RMS of the loudest ``frame``-long stretch (speech has loud frames, silence none)."""
    n = len(mono) // frame * frame
    if n == 0:
        return float(np.sqrt(np.mean(mono.astype(np.float64) ** 2))) if len(mono) else 0.0
    frames = mono[:n].astype(np.float64).reshape(-1, frame)
    return float(np.sqrt((frames ** 2).mean(1)).max())


def loudest_window_start(mono: np.ndarray, window: int, hop: int) -> int:
    """Start sample of the ``window``-long stretch with the most energy."""
    energy = np.convolve(mono.astype(np.float64) ** 2, np.ones(hop), mode="valid")[::hop]
    span = max(1, (window - hop) // hop + 1)
    if len(energy) <= span:
        return 0
    sums = np.convolve(energy, np.ones(span), mode="valid")
    return int(np.argmax(sums)) * hop


@lru_cache(maxsize=4)
def mel_transform(sample_rate: int, n_fft: int, win: int | None, hop: int, n_mels: int, f_min: float = 0.0,
                  f_max: float | None = None, librosa_filters: bool = False):
    """The project's one mel spectrogram (torchaudio's, power 2): (..., samples) -> (..., n_mels, frames).

    ``librosa_filters``: Slaney-scale, Slaney-normalised filters and zero padding, as
    ``librosa.feature.melspectrogram`` computes them (the speaker encoder was trained on those; the two
    agree to 5e-7 of the peak).
    """
    import torchaudio

    slaney = {"mel_scale": "slaney", "norm": "slaney", "pad_mode": "constant"} if librosa_filters else {}
    return torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, win_length=win,
                                                hop_length=hop, f_min=f_min, f_max=f_max, n_mels=n_mels,
                                                power=2.0, **slaney)


def log_mel(waveforms: torch.Tensor, cfg: AudioConfig) -> torch.Tensor:
    """(B, num_samples) waveforms -> (B, n_mels, frames) log-mels min-max scaled to [0, 1].

    The scale is dB relative to each clip's peak, clamped to ``top_db``, so gain
    does not matter and values always span [0, 1].
    """
    transform = mel_transform(cfg.sample_rate, cfg.n_fft, cfg.win_length, cfg.hop_length, cfg.n_mels, cfg.f_min,
                              cfg.f_max)
    mel = transform(waveforms.float())  # (B, n_mels, frames)
    db = 10.0 * torch.log10(mel.clamp_min(1e-10))
    peak = db.amax(dim=(1, 2), keepdim=True)
    return ((db - peak + cfg.top_db).clamp_min(0.0) / cfg.top_db).contiguous()


# --- Image -------------------------------------------------------------------------------------

@dataclass
class ImageInput:
    """A photo ready for the image encoder."""

    pixels: torch.Tensor  # (3, S, S) float, min-max normalised to [-0.5, 0.5]
    shown: np.ndarray  # (S, S, 3) uint8: the crop the model saw
    notes: list[str] = field(default_factory=list)


def read_image(source, cfg: ImageConfig):
    """Decode a path, bytes, numpy array or PIL image into an RGB PIL image, safely."""
    from PIL import Image, ImageOps

    from mbm.limits import MAX_DECODE_PIXELS
    from mbm.safe_media import open_image, shrink, to_uint8

    if isinstance(source, Image.Image):
        img = source
        if img.width * img.height > cfg.max_pixels:
            raise InputError(f"the image is too large ({img.width}x{img.height}); "
                             f"the limit is {cfg.max_pixels // 1_000_000} megapixels")
        img = shrink(img)
    elif isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or source.size == 0:
            raise InputError(f"an image array must be HxW or HxWxC, got shape {source.shape}")
        if source.shape[0] * source.shape[1] > MAX_DECODE_PIXELS:
            raise InputError(f"the image array is too large ({source.shape[1]}x{source.shape[0]}); "
                             f"the limit is {MAX_DECODE_PIXELS // 1_000_000} megapixels")
        arr = source[..., :3] if source.ndim == 3 else source
        if arr.dtype != np.uint8:
            arr = to_uint8(arr)  # float32 row blocks, never a float64 copy
        img = shrink(Image.fromarray(np.ascontiguousarray(arr)))
    else:
        # Pixel bound before decoding, JPEG decoded at reduced size, other formats over the decode
        # bound refused, then shrunk to a working size (mbm.safe_media).
        img = open_image(source, cfg.max_pixels, cfg.size * 4)
        img = ImageOps.exif_transpose(img)
    return _to_rgb(img)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    from mbm.safe_media import to_uint8

    return to_uint8(arr)


def _to_rgb(img):
    """Any PIL mode (1, L, P, RGBA, CMYK, I;16, F...) -> RGB; transparency on white."""
    from PIL import Image

    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = Image.fromarray(_to_uint8(np.asarray(img)))  # float32 row blocks, no float64 copy
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def prepare_image(img, cfg: ImageConfig) -> ImageInput:
    """RGB PIL image -> resize shorter side, centre crop, min-max normalise."""
    from PIL import Image

    notes: list[str] = []
    if min(img.size) < MIN_IMAGE_SIDE:
        raise InputError(f"the image is only {img.width}x{img.height} pixels; the model needs at least "
                         f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    w, h = img.size
    scale = cfg.size / min(w, h)
    full_w, full_h = max(cfg.size, round(w * scale)), max(cfg.size, round(h * scale))
    left = (full_w - cfg.size) // 2
    top = (full_h - cfg.size) // 2
    # Resize only the region the centre crop keeps (the same geometry as resizing the whole image and
    # then cropping): resizing first would blow a 1,000,000x8 strip up to gigabytes before the crop.
    box = (left * w / full_w, top * h / full_h, (left + cfg.size) * w / full_w, (top + cfg.size) * h / full_h)
    crop = img.resize((cfg.size, cfg.size), Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
    shown = np.asarray(crop, dtype=np.uint8).copy()
    pixels = normalise_pixels(torch.from_numpy(shown).permute(2, 0, 1)[None].float())[0]  # (3, S, S)
    if float(shown.max()) - float(shown.min()) < 2:
        notes.append("the image is a flat colour")
    return ImageInput(pixels=pixels, shown=shown, notes=notes)


def normalise_pixels(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) values 0..255 -> per-image min-max scaled to [-0.5, 0.5]."""
    lo = images.amin(dim=(1, 2, 3), keepdim=True)
    hi = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - lo) / (hi - lo).clamp_min(1.0) - 0.5


# --- Text --------------------------------------------------------------------------------------

@dataclass
class TextInput:
    """A typed text ready for the text encoder."""

    ids: torch.Tensor  # (T,) token ids, T <= max_tokens
    tokens: list[str]  # the tokens as the model sees them (unknown ones shown as <unk>)
    notes: list[str] = field(default_factory=list)


_TOKEN = re.compile(r"\d|[^\W\d_]+(?:'[^\W\d_]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case, Unicode-normalise and split into words and single digits."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _TOKEN.findall(text)


def encode_text(text: str | None, vocab: list[str], cfg: TextConfig) -> TextInput | None:
    """Tokenise ``text`` into vocabulary ids; None when it holds no words at all.

    Raises:
        InputError: the text has words but none the model knows.
    """
    if text is None or not text.strip():
        return None
    notes: list[str] = []
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS]
        notes.append(f"text longer than {MAX_TEXT_CHARS} characters was cut")
    words = tokenize(text)
    if not words:
        raise InputError("the text holds no words (only symbols or emoji); type a command such as 'dim the lamp'")
    if len(words) > cfg.max_tokens:
        notes.append(f"only the first {cfg.max_tokens} of {len(words)} words were read")
        words = words[:cfg.max_tokens]
    index = {w: i for i, w in enumerate(vocab)}
    ids = [index.get(w, index[UNK]) for w in words]
    if all(i == index[UNK] for i in ids):
        raise InputError("none of the words in the text are known to the model; try e.g. 'turn on the fan'")
    tokens = [w if i != index[UNK] else UNK for w, i in zip(words, ids)]
    unknown = [w for w, i in zip(words, ids) if i == index[UNK]]
    if unknown:
        notes.append("unknown words ignored: " + ", ".join(unknown[:5]))
    return TextInput(ids=torch.tensor(ids, dtype=torch.long), tokens=tokens, notes=notes)


def build_vocab(words: list[str]) -> list[str]:
    """Vocabulary list: <pad>=0, <unk>=1, then the words (sorted, unique)."""
    return [PAD, UNK] + sorted(set(words) - {PAD, UNK})
