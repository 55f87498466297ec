"""Where the word model fails on real speech: by source and sample rate, confused pairs, noise, the window.

    python -m mbm.scenarios.voice_control.speech_eval --data ../shared/data --split heldout --json \
        [--results assets/voice_control/eval_results.json]

Audio only (the word head), on the real clips the split holds out, and on the held-out speakers of
``speech_commands_more/`` (115 speakers; split by speaker as the others, so that a model trained on its
other speakers is scored on the same ones). ``--split validation`` scores the validation speakers instead
(``mbm.data.readers.split_validation``: a fifth of the training speakers of ``speech_commands_more/``,
which training leaves out). Prints one JSON object:

- ``word_accuracy_real`` and ``word_accuracy_by_source`` (as ``mbm.evaluate`` gives them);
- ``word_accuracy_by_sample_rate``: grouped by the file's own rate (FSDD is 8 kHz);
- ``word_confusion_pairs``: the most frequent (said, heard) pairs among the errors;
- ``word_accuracy_babble_snr``: accuracy with babble (the sum of three other held-out clips, other
  speakers) added to each clip's window at 20, 10 and 5 dB SNR (``torchaudio.functional.add_noise``);
- ``word_accuracy_resampled_8khz``: accuracy with every window resampled to 8 kHz and back
  (``mbm.data.augment.resample_8k``: a proxy for 8 kHz microphones on speakers recorded at 16 kHz);
- ``word_window_miss_share``: the share of clips whose spoken word (``torchaudio.functional.vad`` from
  each end) the model's loudest-second window does not cover to at least ``COVERED``.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from mbm.checkpoint import load_checkpoint
from mbm.cli import print_result
from mbm.config import AudioConfig
from mbm.data.augment import resample_8k
from mbm.data.readers import SpeechClip, list_more_speech_clips, list_speech_clips, split_speech, split_validation
from mbm.paths import VOICE_CONTROL_CHECKPOINT
from mbm.preprocess import InputError, fit_window, log_mel, loudest_window_start, read_audio
from mbm.safe_media import mono_at
from mbm.scenarios.voice_control.eval_inputs import run_model
from mbm.scenarios.voice_control.evaluate import accuracy_by_group
from mbm.scenarios.voice_control.spec import WORDS

SNRS_DB = (20, 10, 5)
BABBLE_VOICES = 3  # other clips summed into one babble
COVERED = 0.9  # share of the spoken span the window must hold for the word to count as inside it
TOP_PAIRS = 10


def more_clips(data_dir: Path) -> list[SpeechClip]:
    """``speech_commands_more/<word>/<source>_<speaker>_nohash_<n>.wav`` as clips of source ``speech_commands_more``."""
    return list_more_speech_clips(data_dir)


def clips_of_split(data_dir: Path, split: str) -> list[SpeechClip]:
    """The real clips ``split`` scores: ``heldout`` (the evaluation's clips and the held-out speakers of
    ``speech_commands_more/``), ``validation`` (the speakers :func:`split_validation` keeps from training,
    where choices are made) or ``all``."""
    clips = list_speech_clips(data_dir, more=True)
    if split == "all":
        return clips
    train, held = split_speech(clips)
    return split_validation(train)[1] if split == "validation" else held


def speech_span(mono: np.ndarray, sample_rate: int) -> tuple[int, int]:
    """(start, end) samples of the speech in a mono clip: ``torchaudio.functional.vad`` trims each end.

    The whole clip when the detector finds nothing (a clip of silence, or speech from its first sample).
    """
    x = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    front = AF.vad(x, sample_rate)
    start = len(x) - len(front)
    back = AF.vad(torch.flip(x, [0]), sample_rate)
    end = len(back)
    if end <= start:  # nothing found from one end or the other
        return 0, len(x)
    return start, end


def window_covers(span: tuple[int, int], window_start: int, window: int, covered: float = COVERED) -> bool:
    """Whether ``[window_start, window_start + window)`` holds at least ``covered`` of ``span``."""
    a, b = span
    inside = max(0, min(b, window_start + window) - max(a, window_start))
    return inside >= covered * max(1, b - a)


def babble(waves: torch.Tensor, i: int, speakers: list[str], voices: int = BABBLE_VOICES) -> torch.Tensor:
    """The sum of ``voices`` other windows of ``waves`` (N, samples), none by clip ``i``'s speaker; deterministic."""
    others = [j for j in range(len(waves)) if speakers[j] != speakers[i]]
    if not others:
        return torch.zeros_like(waves[i])
    picks = [others[(i * 7 + k * 31) % len(others)] for k in range(voices)]
    return waves[picks].sum(0)


def with_babble(waves: torch.Tensor, speakers: list[str], snr_db: float) -> torch.Tensor:
    """Each window of ``waves`` (N, samples) with babble added at ``snr_db`` (silent windows stay silent)."""
    noise = torch.stack([babble(waves, i, speakers) for i in range(len(waves))])
    noise = noise + 1e-8 * (noise.abs().sum(1, keepdim=True) == 0)  # add_noise divides by the noise's energy
    return AF.add_noise(waves, noise, torch.full((len(waves),), float(snr_db)))


def read_windows(clips: list[SpeechClip], cfg: AudioConfig):
    """Clips -> (waves (N, samples) at the model's rate, kept clips, file rates, window-covers-word flags)."""
    waves, kept, rates, covers = [], [], [], []
    for clip in clips:
        try:
            samples, sr = read_audio(str(clip.path))
        except InputError:
            continue
        mono = mono_at(samples, sr, cfg.sample_rate)
        window = fit_window(mono, cfg.sample_rate, cfg)[0]  # the window the model hears (as the app cuts it)
        span = speech_span(mono, cfg.sample_rate)
        long = len(mono) > cfg.num_samples  # a shorter clip is heard whole
        start = loudest_window_start(mono, cfg.num_samples, cfg.hop_length) if long else 0
        waves.append(torch.from_numpy(window))
        kept.append(clip)
        rates.append(soundfile.info(str(clip.path)).samplerate)
        covers.append(not long or window_covers(span, start, cfg.num_samples))
    return torch.stack(waves), kept, rates, covers


def speech_report(ckpt_path: Path, clips: list[SpeechClip]) -> dict:
    """The keys of this module's docstring for one checkpoint and clip list."""
    ckpt = load_checkpoint(ckpt_path)
    model, cfg = ckpt.build_model(), ckpt.config.audio
    waves, clips, rates, covers = read_windows(clips, cfg)
    truth = torch.tensor([WORDS.index(c.word) for c in clips])

    def accuracy(w: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        heard = run_model(model, {"audio": log_mel(w, cfg)})["word"].argmax(1)
        return (heard == truth).numpy(), heard

    correct, heard = accuracy(waves)
    pairs = collections.Counter((WORDS[t], WORDS[h]) for t, h in zip(truth.tolist(), heard.tolist()) if t != h)
    speakers = [c.speaker for c in clips]
    return {
        "n_clips": len(clips),
        "word_accuracy_real": round(float(correct.mean()), 4),
        "word_accuracy_by_source": accuracy_by_group(correct, [c.source for c in clips]),
        "word_accuracy_by_sample_rate": accuracy_by_group(correct, [f"{r} Hz" for r in rates]),
        "word_confusion_pairs": [{"said": s, "heard": h, "n": n} for (s, h), n in pairs.most_common(TOP_PAIRS)],
        "word_accuracy_babble_snr": {f"{snr} dB": round(float(accuracy(with_babble(waves, speakers, snr))[0].mean()), 4)
                                     for snr in SNRS_DB},
        "word_accuracy_resampled_8khz": round(float(accuracy(resample_8k(waves, sr=cfg.sample_rate))[0].mean()), 4),
        "word_window_miss_share": round(1 - float(np.mean(covers)), 4),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder laid out like ../shared/data")
    parser.add_argument("--split", choices=("heldout", "validation", "all"), default="heldout",
                        help="heldout: score once, at the end; validation: where choices are made")
    parser.add_argument("--checkpoint", type=Path, default=VOICE_CONTROL_CHECKPOINT)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--results", type=Path, help="also add the numbers to a results JSON (the app's "
                        "assets/voice_control/eval_results.json) as `real_speech`; only with --split heldout")
    args = parser.parse_args(argv)
    if args.results and args.split != "heldout":
        parser.error("--results takes the held-out numbers only (validation numbers are for choosing)")
    clips = clips_of_split(args.data, args.split)
    if not clips:
        parser.error(f"{args.data} holds no speech clips (expected speech_commands/, speech_commands_more/ or "
                     "fsdd/recordings/ as in ../shared/data)")
    report = speech_report(args.checkpoint, clips)
    print_result(report, args.json)
    if args.results:
        from mbm.storage import add_to_results

        command = (f"python -m mbm.scenarios.voice_control.speech_eval --data {args.data} --split heldout --json "
                   f"--results {args.results}")
        add_to_results(args.results, {"real_speech": report, "real_speech_command": command})


if __name__ == "__main__":
    main()
