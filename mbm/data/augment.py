"""Batch augmentation for training (and the corruptions used to probe robustness).

Audio: time shift, speed change, phone-band filtering, optionally muffling (a
random low-pass roll-off), reverberation, additive noise at a random SNR, then
SpecAugment on the log-mel. Images: random crop and
scale, flip, colour/contrast jitter, grey, blur by down-and-up scaling (so image
resolution cannot reveal the photo's source), occlusion.
All functions take and return batched tensors and a ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio.functional as AF


def _rand(g: torch.Generator, *shape) -> torch.Tensor:
    return torch.rand(*shape, generator=g)


def add_noise(wave: torch.Tensor, snr_db: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(B, N) waveforms + coloured noise at ``snr_db`` (B,) dB."""
    b, n = wave.shape
    white = torch.randn(b, n, generator=g)
    # colour: 0 white, 1 pink-ish, 2 brown-ish, via a one-pole low-pass in the frequency domain
    spec = torch.fft.rfft(white)
    freqs = torch.linspace(1e-3, 1.0, spec.shape[1])
    tilt = _rand(g, b, 1) * 2.0
    spec = spec / freqs[None] ** (tilt / 2)
    noise = torch.fft.irfft(spec, n=n)
    p_sig = wave.pow(2).mean(1, keepdim=True).clamp_min(1e-8)
    p_noise = noise.pow(2).mean(1, keepdim=True).clamp_min(1e-12)
    scale = torch.sqrt(p_sig / p_noise / 10 ** (snr_db[:, None] / 10))
    return wave + noise * scale


def augment_audio(wave: torch.Tensor, g: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """(B, N) clean waveforms -> augmented (B, N): speed, shift, phone band, reverberation, noise, gain."""
    b, n = wave.shape
    out = wave.clone()
    # speed / pitch: resample each clip by a factor in [0.85, 1.15], then crop/pad back to N
    for i in range(b):
        if _rand(g, 1).item() < 0.6 * strength:
            factor = 0.85 + 0.3 * _rand(g, 1).item()
            m = max(8, int(n / factor))
            stretched = F.interpolate(out[i][None, None], size=m, mode="linear", align_corners=False)[0, 0]
            if m >= n:
                s = (m - n) // 2
                out[i] = stretched[s:s + n]
            else:
                s = (n - m) // 2
                out[i] = F.pad(stretched, (s, n - m - s))
    # time shift up to +-150 ms
    shifts = ((_rand(g, b) - 0.5) * 0.3 * n * strength).long()
    out = torch.stack([torch.roll(x, int(s)) for x, s in zip(out, shifts)])
    # phone band: low-pass at 4 kHz by 2x down/up sampling, for some clips
    phone = _rand(g, b) < 0.3 * strength
    if phone.any():
        lo = F.avg_pool1d(out[phone][:, None], 2)
        out[phone] = F.interpolate(lo, size=n, mode="linear", align_corners=False)[:, 0]
    # reverberation: convolve with a short decaying noise impulse response
    reverb = _rand(g, b) < 0.3 * strength
    if reverb.any():
        length = 1600  # 100 ms at 16 kHz
        t = torch.arange(length) / length
        ir = torch.randn(int(reverb.sum()), length, generator=g) * torch.exp(-t * (4 + 8 * _rand(g, int(reverb.sum()), 1)))
        ir[:, 0] = 1.0
        wet = torch.fft.irfft(torch.fft.rfft(out[reverb], n=2 * n) * torch.fft.rfft(ir, n=2 * n), n=2 * n)[:, :n]
        out[reverb] = wet / wet.abs().amax(1, keepdim=True).clamp_min(1e-6) * out[reverb].abs().amax(1, keepdim=True)
    # noise at SNR 5..40 dB for most clips
    noisy = _rand(g, b) < 0.8 * strength
    if noisy.any():
        snr = 5 + 35 * _rand(g, int(noisy.sum()))
        out[noisy] = add_noise(out[noisy], snr, g)
    # gain
    return out * (0.3 + 1.4 * _rand(g, b, 1))


# --- microphone and room effects, torchaudio transforms: speech_eval hears 8 kHz through one of them;
# the shipped recipe uses none (the ablation that measured each: docs/history.md, "Real voices")

SAMPLE_RATE = 16000


def _fit_length(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, M) -> (B, n): centre crop or zero padding on both ends."""
    m = x.shape[1]
    if m >= n:
        s = (m - n) // 2
        return x[:, s:s + n]
    s = (n - m) // 2
    return F.pad(x, (s, n - m - s))


def resample_8k(wave: torch.Tensor, g: torch.Generator | None = None, sr: int = SAMPLE_RATE) -> torch.Tensor:
    """(B, N) through 8 kHz and back (``torchaudio.functional.resample``): an 8 kHz microphone or phone line.
    Nothing is drawn (``g`` is unused: the effects' common signature)."""
    return AF.resample(AF.resample(wave, sr, 8000), 8000, sr)[:, :wave.shape[1]]


def band_limit(wave: torch.Tensor, g: torch.Generator, sr: int = SAMPLE_RATE) -> torch.Tensor:
    """(B, N) high-passed at 100-400 Hz and low-passed at 2.5-6 kHz (biquads; one pair of cutoffs a call)."""
    low = 100 + 300 * _rand(g, 1).item()
    high = 2500 + 3500 * _rand(g, 1).item()
    return AF.lowpass_biquad(AF.highpass_biquad(wave, sr, low), sr, high)


SPEEDS = (0.9, 0.95, 1.05, 1.1)


def speed(wave: torch.Tensor, g: torch.Generator, sr: int = SAMPLE_RATE) -> torch.Tensor:
    """(B, N) played faster or slower (tempo and pitch together, ``torchaudio.functional.speed``), back to N."""
    factor = SPEEDS[int(torch.randint(len(SPEEDS), (1,), generator=g))]
    return _fit_length(AF.speed(wave, sr, factor)[0], wave.shape[1])


def babble(wave: torch.Tensor, g: torch.Generator, pool: torch.Tensor | None = None,
           snr_db: tuple[float, float] = (0.0, 20.0)) -> torch.Tensor:
    """(B, N) with 1-3 clips of ``pool`` (M, N) summed in at ``snr_db`` (``torchaudio.functional.add_noise``).

    ``pool`` is other speech (training clips); without it, pink-ish noise of the same batch stands in.
    """
    b, n = wave.shape
    if pool is None or not len(pool):
        pool = add_noise(torch.zeros(b, n), torch.zeros(b), g) + torch.randn(b, n, generator=g) * 0.1
    picks = torch.randint(len(pool), (b, 3), generator=g)
    voices = torch.randint(1, 4, (b, 1), generator=g)
    noise = (pool[picks] * (torch.arange(3)[None, :, None] < voices[:, :, None])).sum(1)
    noise = noise + 1e-6 * torch.randn(b, n, generator=g)  # add_noise divides by the noise's energy
    snr = snr_db[0] + (snr_db[1] - snr_db[0]) * _rand(g, b)
    return AF.add_noise(wave, noise, snr)


def room_reverb(wave: torch.Tensor, g: torch.Generator, sr: int = SAMPLE_RATE) -> torch.Tensor:
    """(B, N) convolved (``torchaudio.functional.fftconvolve``) with a room's impulse response: decaying
    noise of reverberation time 0.2-0.8 s after the direct sound; the peak level is kept."""
    b, n = wave.shape
    length = int(0.5 * sr)
    t = torch.arange(length) / sr
    rt60 = 0.2 + 0.6 * _rand(g, b, 1)
    ir = torch.randn(b, length, generator=g) * torch.exp(-6.9 * t / rt60) * 0.3
    ir[:, 0] = 1.0
    wet = AF.fftconvolve(wave, ir)[:, :n]
    return wet / wet.abs().amax(1, keepdim=True).clamp_min(1e-6) * wave.abs().amax(1, keepdim=True)


def gain(wave: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(B, N) louder or quieter by -20..+10 dB (``torchaudio.functional.gain``, one level a call)."""
    return AF.gain(wave, -20 + 30 * _rand(g, 1).item())


def clipping(wave: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(B, N) driven 6-20 dB over full scale of its peak and clipped there: an overloaded microphone."""
    peak = wave.abs().amax(1, keepdim=True).clamp_min(1e-6)
    level = peak * 10 ** (-(6 + 14 * _rand(g, wave.shape[0], 1)) / 20)
    return torch.maximum(torch.minimum(wave, level), -level) / level * peak


# name -> effect, in the order they are applied (the room before the microphone, the microphone before the line)
MIC_EFFECTS = {"speed": speed, "room_reverb": room_reverb, "babble": babble, "band_limit": band_limit,
               "resample_8k": resample_8k, "gain": gain, "clipping": clipping}


def mic_effects(wave: torch.Tensor, chances: dict[str, float], g: torch.Generator,
                pool: torch.Tensor | None = None) -> torch.Tensor:
    """(B, N) -> (B, N): each effect of ``chances`` (name -> chance 0..1) applied to that share of the rows."""
    odd = sorted(set(chances) - set(MIC_EFFECTS))
    if odd:
        raise ValueError(f"unknown microphone effects {odd}; known: {sorted(MIC_EFFECTS)}")
    out = wave.clone()
    for name, effect in MIC_EFFECTS.items():
        rows = _rand(g, len(out)) < chances.get(name, 0.0)
        if rows.any():
            kwargs = {"pool": pool} if name == "babble" else {}
            out[rows] = effect(out[rows], g, **kwargs)
    return out


def spec_augment(mel: torch.Tensor, g: torch.Generator, freq_mask: int = 6, time_mask: int = 12) -> torch.Tensor:
    """(B, n_mels, F) -> same with one frequency band (0..freq_mask-1 mels) and one time span
    (0..time_mask-1 frames) zeroed per clip, at uniform places: torchaudio's per-example masks.

    torchaudio draws from the global generator; it is forked and seeded from ``g`` so the sampler's own
    generator alone decides the masks (checkpoints before this change drew the same sizes and places
    from ``g`` in a Python loop).
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = AF.mask_along_axis_iid(mel, freq_mask, 0.0, axis=1)
        return AF.mask_along_axis_iid(out, time_mask, 0.0, axis=2)


def augment_images(images: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """(B, 3, H, W) uint8-valued floats (H, W >= size) -> (B, 3, size, size) augmented, still 0..255."""
    b, _, h, w = images.shape
    out = torch.empty(b, 3, size, size)
    for i in range(b):
        scale = 0.75 + 0.25 * _rand(g, 1).item()  # crop side as a fraction of the image
        ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
        y = int(_rand(g, 1).item() * (h - ch + 1))
        x = int(_rand(g, 1).item() * (w - cw + 1))
        crop = images[i:i + 1, :, y:y + ch, x:x + cw]
        if _rand(g, 1).item() < 0.5:
            crop = crop.flip(3)
        # blur by down-and-up scaling, sometimes: resolution must not give the source away
        if _rand(g, 1).item() < 0.2:
            low = int(size * (0.3 + 0.5 * _rand(g, 1).item()))
            crop = F.interpolate(crop, size=(low, low), mode="area")
        out[i] = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)[0]
    # colour jitter: brightness, contrast, per-channel gain; some grey
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    contrast = 0.75 + 0.5 * _rand(g, b, 1, 1, 1)
    out = (out - mean) * contrast + mean * (0.8 + 0.4 * _rand(g, b, 1, 1, 1))
    out = out * (0.85 + 0.3 * _rand(g, b, 3, 1, 1))
    grey = _rand(g, b) < 0.1
    out[grey] = out[grey].mean(1, keepdim=True).expand(-1, 3, -1, -1)
    # occlusion: a random grey rectangle on some images
    for i in torch.nonzero(_rand(g, b) < 0.1).flatten().tolist():
        s = int(size * (0.15 + 0.25 * _rand(g, 1).item()))
        y, x = (int(_rand(g, 1).item() * (size - s)) for _ in range(2))
        out[i, :, y:y + s, x:x + s] = 128.0
    return out.clamp(0, 255)


def blur_images(images: torch.Tensor, level: float) -> torch.Tensor:
    """Corruption for robustness curves: (B, 3, S, S) blurred by down-and-up scaling; level 0..1."""
    if level <= 0:
        return images
    s = images.shape[-1]
    low = max(2, round(s * (1 - 0.9 * level)))
    return F.interpolate(F.interpolate(images, size=(low, low), mode="area"), size=(s, s), mode="bilinear",
                         align_corners=False)


def snr_for_level(level: float) -> float:
    """Corruption level 0..1 -> SNR in dB (level 1 = -10 dB, noise louder than speech)."""
    return 40.0 - 50.0 * level if level > 0 else math.inf
