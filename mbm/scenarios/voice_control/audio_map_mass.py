"""Where the audio map's mass falls: inside the spoken word, or in the silence around it.

Each held-out real clip goes through the app's own path with a held-out photo of a device its word works on
(``VoiceControlPredictor.predict``, then the map the page draws, :func:`maps.with_occlusion_maps`). The
spoken word's span is found from the energy of the window the model heard: the 25 ms frames at least 12 dB
above the window's noise floor (its 10th-percentile frame) and within 40 dB of the loudest, first to last,
widened by 50 ms before and 100 ms after. (A first rule, frames within 20 dB of the loudest, cut off the quiet
release of the "p" in the lamp example's "up", 30 dB under the vowel, which is where its map peaks: the model
telling "up" from "off" by the consonant.) The share of the audio map's mass inside that span is taken; a map
blind to the word would score the span's share of the window.

- ``audio_map_in_speech_share``: the mean share over the clips whose audio map holds any mass;
  ``audio_map_in_speech_flat``: how many maps were all zero (nothing drawn: masking any part changed nothing);
  ``audio_map_in_speech_noisy``: how many windows had no frame 12 dB above their noise (left out);
- ``audio_map_in_speech_chance``: the mean span length / window length;
- ``audio_map_in_speech_by_source``: the share per recording source.

    python -m mbm.scenarios.voice_control.audio_map_mass --data ../shared/data --split heldout [--results FILE]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from mbm.scenarios.voice_control.map_mass import mean_or_none
from mbm.scenarios.voice_control.maps import with_occlusion_maps
from mbm.scenarios.voice_control.spec import ACTION_TABLE

FRAME_S, HOP_S = 0.025, 0.010
ABOVE_NOISE_DB = 12.0  # speech frames are this far above the noise floor (the 10th-percentile frame) ...
UNDER_PEAK_DB = 40.0  # ... and at most this far under the loudest frame
MARGIN_S = (0.05, 0.10)  # the span widened before / after
SAMPLES = 60
SEED = 0


def speech_span(wave: np.ndarray, rate: int) -> tuple[float, float] | None:
    """The spoken part of a window as (start, end), fractions of its length, by frame energy; None when no
    frame stands 12 dB above the noise floor (noise as loud as the speech: energy cannot tell them apart)."""
    frame, hop = int(FRAME_S * rate), int(HOP_S * rate)
    n = max(1, 1 + (len(wave) - frame) // hop)
    rms = np.array([np.sqrt(np.mean(wave[i * hop:i * hop + frame] ** 2) + 1e-12) for i in range(n)])
    db = 20 * np.log10(rms / rms.max())
    loud = np.flatnonzero(db >= max(-UNDER_PEAK_DB, np.percentile(db, 10) + ABOVE_NOISE_DB))
    if not len(loud):
        return None
    start = loud[0] * hop / rate - MARGIN_S[0]
    end = (loud[-1] * hop + frame) / rate + MARGIN_S[1]
    length = len(wave) / rate
    return max(0.0, start / length), min(1.0, end / length)


def share_inside(heat: list[float], span: tuple[float, float]) -> float | None:
    """The share of a per-token map's mass inside ``span`` (tokens cover the window evenly; a token half
    inside counts half). None when the map holds no mass."""
    heat = np.clip(np.asarray(heat, dtype=float), 0, None)
    if heat.sum() <= 0:
        return None
    edges = np.linspace(0, 1, len(heat) + 1)
    overlap = np.clip(np.minimum(edges[1:], span[1]) - np.maximum(edges[:-1], span[0]), 0, None) * len(heat)
    return float((heat * overlap).sum() / heat.sum())


def pairs(data_dir: Path, split: str = "heldout", n: int = SAMPLES, seed: int = SEED) -> list[tuple]:
    """``n`` (clip, photo) pairs of ``split``: real clips spread over words and sources, each with a photo of a
    device its word works on."""
    from mbm.data.readers import list_device_photos, list_speech_clips, split_photos, split_speech

    clips, photos = list_speech_clips(data_dir), list_device_photos(data_dir)
    if split in ("heldout", "train"):
        side = 1 if split == "heldout" else 0
        clips, photos = split_speech(clips)[side], split_photos(photos)[side]
    rng = random.Random(seed)
    clips = sorted(clips, key=lambda c: str(c.path))
    rng.shuffle(clips)
    out = []
    for clip in clips[:n]:
        usable = [p for p in photos if clip.word in ACTION_TABLE[p.device]]
        if usable:
            out.append((clip, rng.choice(usable)))
    return out


def audio_map_metrics(predictor, items: list[tuple]) -> dict:
    """The ``audio_map_in_speech_*`` numbers of (SpeechClip, DevicePhoto) pairs."""
    from mbm.errors import InputError

    shares, chance, by_source, flat, noisy = [], [], {}, 0, 0
    rate = predictor.cfg.audio.sample_rate
    for clip, photo in items:
        try:
            result = with_occlusion_maps(predictor, predictor.predict(audio=str(clip.path), image=str(photo.path)))
        except InputError:
            continue
        span = speech_span(result.inputs.audio.waveform, rate)
        if span is None:
            noisy += 1
            continue
        share = share_inside(result.maps.get("audio", []), span)
        if share is None:
            flat += 1
            continue
        shares.append(share)
        chance.append(span[1] - span[0])
        by_source.setdefault(clip.source, []).append(share)
    return {"audio_map_in_speech_share": mean_or_none(shares), "audio_map_in_speech_chance": mean_or_none(chance),
            "audio_map_in_speech_flat": flat, "audio_map_in_speech_noisy": noisy, "audio_map_in_speech_n": len(shares),
            "audio_map_in_speech_by_source": {s: mean_or_none(v) for s, v in sorted(by_source.items())}}


def main(argv: list[str] | None = None) -> int:
    from mbm.scenarios.voice_control.predictor import VoiceControlPredictor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder laid out like ../shared/data")
    parser.add_argument("--split", choices=("heldout", "train", "all"), default="heldout")
    parser.add_argument("--n", type=int, default=SAMPLES)
    parser.add_argument("--results", type=Path, help="a results JSON to add the numbers to")
    args = parser.parse_args(argv)
    items = pairs(args.data, args.split, args.n)
    if not items:
        parser.error(f"{args.data} holds no speech clips with device photos for the {args.split} split")
    out = audio_map_metrics(VoiceControlPredictor.from_checkpoint(), items)
    print(json.dumps(out, indent=1))
    if args.results:
        from mbm.storage import add_to_results

        add_to_results(args.results, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
