"""Experiment (issue 31): which microphone effects help the word model hear new voices? A cheap proxy.

    PYTHONPATH=. python tools/experiments/speech_scripts/mic_ablation.py ../shared/data [STEPS] [CONFIG ...]

A full retrain (both stages) costs about 25 minutes here, one per switch is out of reach; this proxy
fine-tunes only the speech encoder of the shipped ``checkpoints/voice_control.pt`` (audio alone through the
fusion to the word head) for STEPS steps (default 150), batch 64, on the real clips of the fit speakers
(``split_validation`` of the training side: FSDD, ``speech_commands/`` and four fifths of the training
speakers of ``speech_commands_more/``), each batch with the training augmentation
(``mbm.data.augment.augment_audio``) and then one configuration of ``mbm.data.augment.mic_effects``
(babble from the fit clips). Every configuration starts from the same weights and seed. Scores the
validation speakers (300 clips of 21 ``speech_commands_more/`` speakers, never heard by the shipped model):
clean, with babble of three other validation clips at 10 dB (speech_eval's ``with_babble``) and through
8 kHz. Writes nothing; prints one line per configuration.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from mbm.checkpoint import load_checkpoint
from mbm.data.augment import MIC_EFFECTS, mic_effects, resample_8k
from mbm.data.readers import list_speech_clips, split_speech, split_validation
from mbm.paths import VOICE_CONTROL_CHECKPOINT
from mbm.preprocess import log_mel
from mbm.scenarios.voice_control.eval_inputs import run_model
from mbm.scenarios.voice_control.spec import WORDS
from mbm.scenarios.voice_control.speech_eval import read_windows, with_babble
from tools.experiments.speech_scripts.word_finetune import finetune_audio_encoder

CHANCE = 0.3  # each effect's chance when it is on
CACHE = Path("/tmp/mic_ablation_waves.pt")


def configs(names: list[str]) -> dict[str, dict[str, float]]:
    every = {"none": {}, **{n: {n: CHANCE} for n in MIC_EFFECTS}, "all": {n: CHANCE for n in MIC_EFFECTS}}
    return {n: every[n] for n in names} if names else every


def main() -> None:
    data = Path(sys.argv[1])
    steps = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 150
    names = [a for a in sys.argv[2:] if not a.isdigit()]
    seeds = [int(n.split("@")[1]) for n in names if "@" in n] or [0]
    names = [n.split("@")[0] for n in names]
    ckpt = load_checkpoint(VOICE_CONTROL_CHECKPOINT)
    cfg = ckpt.config.audio
    if CACHE.exists():
        sets = torch.load(CACHE)
    else:
        fit, val = split_validation(split_speech(list_speech_clips(data, more=True))[0])
        sets = {}
        for name, clips in (("fit", fit), ("val", val)):
            waves, kept, _, _ = read_windows(clips, cfg)
            sets[name] = (waves, torch.tensor([WORDS.index(c.word) for c in kept]), [c.speaker for c in kept])
        torch.save(sets, CACHE)
    fit_waves, fit_words, _ = sets["fit"]
    val_waves, val_words, val_speakers = sets["val"]
    val_inputs = {"clean": val_waves, "babble 10 dB": with_babble(val_waves, val_speakers, 10),
                  "8 kHz": resample_8k(val_waves, sr=cfg.sample_rate)}

    def score(model) -> str:
        out = []
        for name, waves in val_inputs.items():
            heard = run_model(model, {"audio": log_mel(waves, cfg)})["word"].argmax(1)
            out.append(f"{name} {float((heard == val_words).float().mean()):.3f}")
        return "  ".join(out)

    print(f"fit {len(fit_words)} clips, validation {len(val_words)}; shipped: {score(ckpt.build_model().eval())}",
          flush=True)
    for seed in seeds:
        for name, chances in configs(names).items():
            t0 = time.time()
            torch.manual_seed(seed)
            g = torch.Generator().manual_seed(seed)
            model = ckpt.build_model()
            finetune_audio_encoder(model, fit_waves, fit_words, cfg, steps, g,
                                   lambda w, c=chances, g=g: mic_effects(w, c, g, pool=fit_waves))
            print(f"seed {seed} {name:12s} {score(model)}  ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
