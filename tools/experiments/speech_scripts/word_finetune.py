"""Experiment (issue 31): does more real speech + babble make the word model hear new voices?

    PYTHONPATH=. python tools/experiments/speech_scripts/word_finetune.py ../shared/data [STEPS] [--heldout]

Starts from the shipped ``checkpoints/voice_control.pt`` and fine-tunes only its speech encoder, audio
alone through the fusion to the word head, on the real clips of the training speakers: FSDD,
``speech_commands/`` and ``speech_commands_more/`` (each split by speaker as ``split_speech`` does; a
fifth of the training speakers is kept for validation). Each batch gets the training augmentation
(``mbm.data.augment.augment_audio``) and, for half the clips, babble: 1-3 other training clips summed,
at 0-20 dB SNR (``torchaudio.functional.add_noise``). Prints word accuracy on the validation speakers,
clean and with babble at 10 dB, before and after; ``--heldout`` also scores the held-out speakers
(once, at the end). Writes nothing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torchaudio.functional as AF

from mbm.checkpoint import load_checkpoint
from mbm.data.augment import augment_audio
from mbm.data.readers import list_speech_clips, split_speech
from mbm.paths import VOICE_CONTROL_CHECKPOINT
from mbm.preprocess import log_mel
from mbm.scenarios.voice_control.eval_inputs import run_model
from mbm.scenarios.voice_control.spec import WORDS
from mbm.scenarios.voice_control.speech_eval import more_clips, read_windows, with_babble

BATCH, LR, SEED = 64, 1e-3, 0


def accuracy(model, waves, words, cfg) -> float:
    heard = run_model(model, {"audio": log_mel(waves, cfg)})["word"].argmax(1)
    return float((heard == words).float().mean())


def report(tag, model, sets, cfg) -> None:
    for name, (waves, words, speakers) in sets.items():
        clean = accuracy(model, waves, words, cfg)
        noisy = accuracy(model, with_babble(waves, speakers, 10), words, cfg)
        print(f"{tag:7s} {name:22s} n={len(words):4d}  clean {clean:.3f}  babble 10 dB {noisy:.3f}", flush=True)


def babble_batch(waves: torch.Tensor, pool: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Half the rows of ``waves`` (B, N) with 1-3 clips of ``pool`` summed in at 0-20 dB SNR."""
    b = len(waves)
    picks = torch.randint(len(pool), (b, 3), generator=g)
    voices = torch.randint(1, 4, (b, 1), generator=g)
    noise = (pool[picks] * (torch.arange(3)[None, :, None] < voices[:, :, None])).sum(1)  # (B, N)
    snr = 20 * torch.rand(b, generator=g)
    mixed = AF.add_noise(waves, noise + 1e-8, snr)
    return torch.where((torch.rand(b, 1, generator=g) < 0.5), mixed, waves)


def finetune_audio_encoder(model, fit_waves: torch.Tensor, fit_words: torch.Tensor, cfg, steps: int,
                           g: torch.Generator, effect, log_every: int = 0) -> None:
    """Fine-tune ``model``'s audio encoder alone (the rest stays in eval mode) on the word labels: AdamW with
    a one-cycle rate, BATCH clips a step, the training augmentation and then ``effect(waves)``."""
    audio = model.encoders["audio"]
    opt = torch.optim.AdamW(audio.parameters(), lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    for step in range(steps):
        model.eval()
        audio.train()
        idx = torch.randint(len(fit_words), (BATCH,), generator=g)
        waves = effect(augment_audio(fit_waves[idx], g))
        logits = model({"audio": log_mel(waves, cfg)}).logits["word"]
        loss = torch.nn.functional.cross_entropy(logits, fit_words[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}: loss {loss.item():.3f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()


def main() -> None:
    data = Path(sys.argv[1])
    steps = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 400
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    ckpt = load_checkpoint(VOICE_CONTROL_CHECKPOINT)
    model, cfg = ckpt.build_model(), ckpt.config.audio
    train, held = split_speech(list_speech_clips(data) + more_clips(data))
    fit, val = split_speech(train)  # a fifth of the training speakers, per source, for validation

    def tensors(clips):
        waves, kept, _, _ = read_windows(clips, cfg)
        return waves, torch.tensor([WORDS.index(c.word) for c in kept]), [c.speaker for c in kept]

    t0 = time.time()
    sets = {f"val {s}": tensors([c for c in val if c.source == s]) for s in sorted({c.source for c in val})}
    fit_waves, fit_words, _ = tensors(fit)
    print(f"read {len(fit_words)} fit / {sum(len(v[1]) for v in sets.values())} validation clips "
          f"in {time.time() - t0:.0f} s", flush=True)
    report("before", model, sets, cfg)

    finetune_audio_encoder(model, fit_waves, fit_words, cfg, steps, g, lambda w: babble_batch(w, fit_waves, g),
                           log_every=100)
    report("after", model, sets, cfg)
    if "--heldout" in sys.argv:
        held_sets = {f"held-out {s}": tensors([c for c in held if c.source == s]) for s in sorted({c.source for c in held})}
        report("after", model, held_sets, cfg)


if __name__ == "__main__":
    main()
