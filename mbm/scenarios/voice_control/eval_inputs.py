"""The evaluation's inputs: real clips and photos read and encoded (unreadable files skipped), the model run on
them in batches, and each clip paired with photos of a few devices for the action accuracy."""

from __future__ import annotations

from collections import defaultdict

import torch

from mbm.config import AudioConfig, ImageConfig
from mbm.data.readers import DevicePhoto, SpeechClip
from mbm.preprocess import InputError, fit_window, log_mel, prepare_audio, prepare_image, read_audio, read_image
from mbm.scenarios.voice_control.spec import DEVICES

PAIR_DEVICES = 3  # each clip is paired with photos of this many devices for the action accuracy


def encode_clips(clips: list[SpeechClip], cfg: AudioConfig) -> tuple[torch.Tensor, list[SpeechClip]]:
    """Clips -> (N, n_mels, F) log-mels, skipping unreadable files (returned list says which were kept)."""
    mels, kept = [], []
    for clip in clips:
        try:
            samples, sr = read_audio(str(clip.path))
            mels.append(prepare_audio(samples, sr, cfg).mel)
            kept.append(clip)
        except InputError:
            continue
    return (torch.stack(mels) if mels else torch.zeros(0, cfg.n_mels, cfg.num_frames)), kept


def encode_photos(photos: list[DevicePhoto], cfg: ImageConfig) -> tuple[torch.Tensor, list[DevicePhoto]]:
    """Photos -> (N, 3, S, S) normalised pixels, skipping unreadable files."""
    pixels, kept = [], []
    for photo in photos:
        try:
            pixels.append(prepare_image(read_image(str(photo.path), cfg), cfg).pixels)
            kept.append(photo)
        except InputError:
            continue
    return (torch.stack(pixels) if pixels else torch.zeros(0, 3, cfg.size, cfg.size)), kept


@torch.inference_mode()
def run_model(model, inputs: dict[str, torch.Tensor], batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Batched forward pass; returns head probabilities and modality weights, concatenated."""
    n = next(iter(inputs.values())).shape[0]
    out: dict[str, list[torch.Tensor]] = defaultdict(list)
    for s in range(0, n, batch_size):
        o = model({m: x[s:s + batch_size] for m, x in inputs.items()})
        for head, logits in o.logits.items():
            out[head].append(logits.softmax(-1))
        out["modality_weights"].append(o.modality_weights)
    return {k: torch.cat(v) for k, v in out.items()}


def encode_clip_windows(clips: list[SpeechClip], cfg: AudioConfig):
    """Like ``encode_clips`` but also keeps the model windows: ``(waves (N, samples), mels, kept clips)``."""
    waves, kept = [], []
    for clip in clips:
        try:
            samples, sr = read_audio(str(clip.path))
            waves.append(torch.from_numpy(fit_window(samples, sr, cfg)[0]))
            kept.append(clip)
        except InputError:
            continue
    if not waves:
        return torch.zeros(0, cfg.num_samples), torch.zeros(0, cfg.n_mels, cfg.num_frames), kept
    waves = torch.stack(waves)  # (N, samples)
    return waves, log_mel(waves, cfg), kept  # the same log-mel as prepare_audio, batched


def encode_photo_crops(photos: list[DevicePhoto], cfg: ImageConfig):
    """Like ``encode_photos`` but also keeps the uint8 crops: ``(shown (N, S, S, 3), pixels, kept photos)``."""
    shown, pixels, kept = [], [], []
    for photo in photos:
        try:
            img = prepare_image(read_image(str(photo.path), cfg), cfg)
            shown.append(torch.from_numpy(img.shown))
            pixels.append(img.pixels)
            kept.append(photo)
        except InputError:
            continue
    if not kept:
        return torch.zeros(0, cfg.size, cfg.size, 3, dtype=torch.uint8), torch.zeros(0, 3, cfg.size, cfg.size), kept
    return torch.stack(shown), torch.stack(pixels), kept


def pair_clips_with_devices(clips: list[SpeechClip], photos: list[DevicePhoto], k: int = PAIR_DEVICES):
    """Deterministic (clip index, photo index) pairs: each clip with photos of ``k`` devices.

    Devices are taken, in a rotating order, among those for which the word is a
    supported command (all devices when fewer than ``k`` support it).
    """
    from mbm.scenarios.voice_control.spec import ACTION_TABLE

    by_device = defaultdict(list)
    for j, p in enumerate(photos):
        by_device[p.device].append(j)
    available = [d for d in DEVICES if by_device[d]]
    pairs = []
    for i, clip in enumerate(clips):
        candidates = [d for d in available if clip.word in ACTION_TABLE[d]]
        if len(candidates) < k:
            candidates = available
        for j in range(min(k, len(candidates))):
            device = candidates[(i + j) % len(candidates)]
            photos_of = by_device[device]
            pairs.append((i, photos_of[(i * 7 + j * 13) % len(photos_of)]))
    return pairs
