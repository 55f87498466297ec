"""Experiment (issue 31): the word model trained from scratch on audio alone, with or without the new speech.

    PYTHONPATH=. python tools/experiments/speech_scripts/word_scratch.py ../shared/data STEPS CONFIG [CONFIG ...]

CONFIG is one of ``shipped`` (speech_commands/ + FSDD training speakers + synthesis, the shipped
recipe's speech), ``more`` (plus the fit speakers of speech_commands_more/), ``more+babble`` (and
babble on 30 % of the clips after the training augmentation, ``mbm.data.augment.babble``: 1-3 real fit
clips at 0-20 dB SNR), ``more+babble-tts`` (no synthesis). A cheap stand-in for the
full two-stage retrain (25 min on idle cores; it did not fit on the busy shared cores): the voice-control
model of ``recipe_cnn.json`` (same encoders, fusion and word head), trained STEPS steps on the stage-1
warm-up's audio batches alone (``VoiceControlSampler.sample_unimodal("audio")``, batch 128, the training
augmentation, ``real_share`` 0.3, bf16 autocast), seed 0. Scores the validation speakers
(``split_validation``: 300 clips, 21 speakers of speech_commands_more/ no config trains on) clean, with
babble at 10 dB and through 8 kHz. Writes nothing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mbm.config import EncoderConfig, ModelConfig
from mbm.data import augment, tts
from mbm.data.readers import list_speech_clips, split_speech, split_validation, tts_clips
from mbm.model import MultimodalModel
from mbm.paths import CACHE
from mbm.preprocess import build_vocab, log_mel
from mbm.scenarios.voice_control.data import PhotoPool, VoiceControlSampler, load_audio_pool
from mbm.scenarios.voice_control.eval_inputs import run_model
from mbm.scenarios.voice_control.spec import DEVICES, WORDS, training_vocabulary
from mbm.scenarios.voice_control.speech_eval import read_windows, with_babble
from mbm.scenarios.voice_control.train import load_recipe

RECIPE = Path("mbm/scenarios/voice_control/recipe_cnn.json")


class BabbleSampler(VoiceControlSampler):
    """The training sampler plus babble from the real clips of the pool on a share of the clips."""

    share = 0.3

    def _augment_audio(self, clip_ids: list[int]) -> torch.Tensor:
        waves = super()._augment_audio(clip_ids)
        pool = self.audio.waves[[i for i, s in enumerate(self.audio.sources) if s != "tts"]]
        return augment.mic_effects(waves, {"babble": self.share}, self.g, pool=pool)


def main() -> None:
    data, steps, names = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    torch.set_num_threads(2)
    train_cfg, fusion_cfg = load_recipe(RECIPE)
    fit, val = split_validation(split_speech(list_speech_clips(data, more=True))[0])
    synthetic = tts_clips(tts.generate(list(WORDS), CACHE / "tts", per_word=train_cfg.tts_per_word,
                                       seed=train_cfg.tts_seed))
    cfg = ModelConfig(heads={"device": len(DEVICES), "word": len(WORDS)})
    vocab = build_vocab(training_vocabulary())
    cfg.encoder = EncoderConfig(vocab_size=len(vocab), audio_band_norm=True)
    cfg.fusion = fusion_cfg
    val_waves, kept, _, _ = read_windows(val, cfg.audio)
    val_words = torch.tensor([WORDS.index(c.word) for c in kept])
    val_inputs = {"clean": val_waves, "babble 10 dB": with_babble(val_waves, [c.speaker for c in kept], 10),
                  "8 kHz": augment.resample_8k(val_waves, sr=cfg.audio.sample_rate)}
    photos = PhotoPool(torch.zeros(len(DEVICES), 3, 8, 8, dtype=torch.uint8), torch.arange(len(DEVICES)),
                       ["none"] * len(DEVICES))
    for name in names:
        t0 = time.time()
        real = [c for c in fit if c.source != "speech_commands_more" or name.startswith("more")]
        clips = real + ([] if name.endswith("-tts") else synthetic)
        train = train_cfg
        torch.manual_seed(train.seed)
        sampler = (BabbleSampler if "babble" in name else VoiceControlSampler)(load_audio_pool(clips, cfg.audio), photos, vocab, cfg.audio, cfg.image,
                                      cfg.text.max_tokens, train)
        model = MultimodalModel(cfg)
        model.encoder_autocast = torch.bfloat16
        opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=train.lr, total_steps=steps, pct_start=0.15)
        model.train()
        for _ in range(steps):
            inputs, targets = sampler.sample_unimodal("audio", 2 * train.batch_size)
            loss = F.cross_entropy(model(inputs).logits["word"], targets["word"], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        model.encoder_autocast = None
        model.eval()
        scores = []
        for tag, waves in val_inputs.items():
            heard = run_model(model, {"audio": log_mel(waves, cfg.audio)})["word"].argmax(1)
            scores.append(f"{tag} {float((heard == val_words).float().mean()):.3f}")
        print(f"{name:16s} real {len(real)} + synthetic {len(clips) - len(real)}: {'  '.join(scores)}  "
              f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
