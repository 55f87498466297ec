"""Live robustness: corrupt the inputs at a level 0..1, switch modalities off, and predict again.

Every corruption is seeded (the same slider position gives the same picture)
and level 0 returns the input unchanged:

- audio noise: coloured noise at ``snr_for_level(level)`` dB (40 dB at a small level,
  -10 dB at 1: noise louder than speech), added to the window the model hears;
- image blur: down-and-up scaling of the crop the model sees (``blur_images``);
- image occlusion: a grey square covering ``level`` of the crop's area, at a seeded place;
- text typos: each letter, with probability ``level``, is swapped with its neighbour or dropped.

    result = predict_corrupted(predictor, audio="up.wav", image="lamp.jpg", text="dim the lamp",
                               audio_noise=0.6, image_blur=0.3, use_text=False)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from mbm.data.augment import add_noise, blur_images, snr_for_level
from mbm.preprocess import prepare_audio, prepare_image, read_audio, read_image

OCCLUSION_GREY = 128


def _check_level(level: float, name: str) -> float:
    level = float(level)
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {level}")
    return level


def noise_audio(waveform: np.ndarray, level: float, seed: int = 0) -> np.ndarray:
    """(N,) waveform + coloured noise at ``snr_for_level(level)`` dB; level 0 = unchanged."""
    level = _check_level(level, "audio noise")
    wave = np.asarray(waveform, dtype=np.float32)
    if level == 0:
        return wave
    g = torch.Generator().manual_seed(seed)
    noisy = add_noise(torch.from_numpy(wave.copy())[None], torch.tensor([snr_for_level(level)]), g)[0]
    return noisy.numpy().astype(np.float32)


def blur_image(shown: np.ndarray, level: float) -> np.ndarray:
    """(S, S, 3) uint8 crop blurred by down-and-up scaling; level 0 = unchanged, 1 = 10% resolution."""
    level = _check_level(level, "image blur")
    shown = np.asarray(shown, dtype=np.uint8)
    if level == 0:
        return shown
    x = torch.from_numpy(shown.copy()).permute(2, 0, 1)[None].float()  # (1, 3, S, S)
    return blur_images(x, level)[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def occlude_image(shown: np.ndarray, level: float, seed: int = 0) -> np.ndarray:
    """(S, S, 3) uint8 crop with a grey square covering ``level`` of its area (seeded place); 0 = unchanged."""
    level = _check_level(level, "image occlusion")
    out = np.asarray(shown, dtype=np.uint8).copy()
    if level == 0:
        return out
    h, w = out.shape[:2]
    side_h, side_w = max(1, round(h * level ** 0.5)), max(1, round(w * level ** 0.5))
    rng = np.random.default_rng(seed)
    y = int(rng.integers(0, h - side_h + 1))
    x = int(rng.integers(0, w - side_w + 1))
    out[y:y + side_h, x:x + side_w] = OCCLUSION_GREY
    return out


def typo_text(text: str, level: float, seed: int = 0) -> str:
    """Each letter, with probability ``level``, is swapped with the next letter or dropped (seeded).

    Spaces and digits stay, so the word count stays the same unless a whole word drops.
    """
    level = _check_level(level, "text typos")
    if level == 0 or not text:
        return text
    rng = random.Random(seed)
    chars = list(text)
    out: list[str] = []
    k = 0
    while k < len(chars):
        c = chars[k]
        if c.isalpha() and rng.random() < level:
            if rng.random() < 0.5 and k + 1 < len(chars) and chars[k + 1].isalpha():
                out += [chars[k + 1], c]  # swap with the neighbour
                k += 2
                continue
            k += 1  # drop
            continue
        out.append(c)
        k += 1
    return "".join(out)


@dataclass
class Corruption:
    """Slider settings: levels in 0..1 and modality switches."""

    audio_noise: float = 0.0
    image_blur: float = 0.0
    image_occlusion: float = 0.0
    text_typos: float = 0.0
    use_audio: bool = True
    use_image: bool = True
    use_text: bool = True
    seed: int = 0


def corrupt_inputs(cfg, audio=None, image=None, text: str | None = None, corruption: Corruption | None = None):
    """Apply ``corruption`` to raw inputs; returns ``(audio, image, text, notes)`` ready for ``predict``.

    Audio comes back as ``(sample_rate, window)`` (the model's window, noised), the
    image as the (S, S, 3) uint8 crop the model sees (blurred, then occluded), the
    text with typos; a switched-off or missing modality comes back as None.
    Unreadable inputs are passed through unchanged so ``predict`` reports them.

    Args:
        cfg: the model config (``predictor.cfg``), for the audio window and the image size.
    """
    c = corruption or Corruption()
    notes: list[str] = []
    out_audio = out_image = out_text = None
    if audio is not None and c.use_audio:
        out_audio = audio
        if c.audio_noise > 0:
            try:
                samples, sr = read_audio(audio)
                window = prepare_audio(samples, sr, cfg.audio).waveform
                out_audio = (cfg.audio.sample_rate, noise_audio(window, c.audio_noise, c.seed))
                notes.append(f"audio: noise at {snr_for_level(c.audio_noise):.0f} dB SNR")
            except ValueError:  # InputError: predict will say why
                out_audio = audio
    if image is not None and c.use_image:
        out_image = image
        if c.image_blur > 0 or c.image_occlusion > 0:
            try:
                shown = prepare_image(read_image(image, cfg.image), cfg.image).shown
                shown = blur_image(shown, c.image_blur)
                shown = occlude_image(shown, c.image_occlusion, c.seed)
                out_image = shown
                notes.append(f"image: blur {c.image_blur:.2f}, occlusion {c.image_occlusion:.2f}")
            except ValueError:
                out_image = image
    if text is not None and c.use_text:
        out_text = typo_text(text, c.text_typos, c.seed)
        if c.text_typos > 0:
            notes.append(f"text: typos at {c.text_typos:.2f} -> '{out_text}'")
    return out_audio, out_image, out_text, notes


def predict_corrupted(predictor, audio=None, image=None, text: str | None = None, *, audio_noise: float = 0.0,
                      image_blur: float = 0.0, image_occlusion: float = 0.0, text_typos: float = 0.0,
                      use_audio: bool = True, use_image: bool = True, use_text: bool = True, seed: int = 0):
    """Predict after the corruptions (levels 0..1) and with some modalities switched off.

    Returns the predictor's result (``VoiceControlResult``); its ``inputs`` hold the
    corrupted inputs the model saw, so every map and view shows them. What was
    done is appended to ``result.inputs.notes``.

    Raises:
        InputError: nothing usable is left (e.g. every modality switched off).
        ValueError: a level outside 0..1.
    """
    c = Corruption(audio_noise=_check_level(audio_noise, "audio noise"),
                   image_blur=_check_level(image_blur, "image blur"),
                   image_occlusion=_check_level(image_occlusion, "image occlusion"),
                   text_typos=_check_level(text_typos, "text typos"),
                   use_audio=use_audio, use_image=use_image, use_text=use_text, seed=seed)
    a, i, t, notes = corrupt_inputs(predictor.cfg, audio, image, text, c)
    if t is not None and c.text_typos > 0 and (a is not None or i is not None):
        from mbm.preprocess import InputError, encode_text

        try:
            encode_text(t, predictor.ckpt.vocab, predictor.cfg.text)
        except InputError:  # the typos left no word the model knows: the text is gone, not an error
            notes.append("text: the typos left no known word, so the text was left out")
            t = None
    result = predictor.predict(audio=a, image=i, text=t)
    off = [m for m, on in (("audio", use_audio), ("image", use_image), ("text", use_text)) if not on]
    if off:
        notes.append("switched off: " + ", ".join(off))
    result.inputs.notes += notes
    return result
