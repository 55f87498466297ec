"""Train a scenario's fusion model from scratch and write its checkpoint.

    python -m mbm.train --scenario voice_control --data ../shared/data

Seeded; shows tqdm progress; generates the text-to-speech clips first when they
are missing (``--tts-dir``). Held-out speakers and photos (see
:mod:`mbm.data.readers`) never enter training; the metrics stored in the
checkpoint are measured on them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mbm.checkpoint import Checkpoint, save_checkpoint
from mbm.config import POOLINGS, EncoderConfig, FusionConfig, ModelConfig, TrainConfig
from mbm.data import tts
from mbm.data.readers import list_device_photos, list_speech_clips, split_photos, split_speech, tts_clips
from mbm.data.voice_control_data import VoiceControlSampler, load_audio_pool, load_photo_pool
from mbm.evaluate import evaluate_voice_control
from mbm.model import MultimodalModel
from mbm.preprocess import build_vocab
from mbm.removal_loss import noised_input_weight_loss, removal_effect_loss, removal_rank_loss
from mbm.scenarios.voice_control import (ACTIONS, DEVICES, WORDS, action_index_matrix, action_probs,
                                         training_vocabulary)


WARMUP_CYCLE = ("image", "audio", "image", "audio", "image", "text")  # modality of each warm-up batch, in turn


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_voice_control(data_dir: Path, out: Path, tts_dir: Path, train: TrainConfig,
                        band_norm: bool = True, fusion_cfg: FusionConfig | None = None) -> Checkpoint:
    seed_everything(train.seed)
    clips = list_speech_clips(data_dir)
    photos = list_device_photos(data_dir)
    if not clips or not photos:
        raise SystemExit(f"{data_dir} holds no speech clips or device photos (expected speech_commands/, fsdd/, "
                         "devices/)")
    train_clips, held_clips = split_speech(clips)
    train_photos, held_photos = split_photos(photos)
    # Exactly the planned clips (the cache may hold others from earlier plans).
    tts_seed = train.seed if train.tts_seed is None else train.tts_seed
    synthetic = tts_clips(tts.generate(list(WORDS), tts_dir, per_word=train.tts_per_word, seed=tts_seed,
                                       progress=tqdm))
    print(f"real clips: {len(train_clips)} train / {len(held_clips)} held out; synthetic: {len(synthetic)}; "
          f"photos: {len(train_photos)} train / {len(held_photos)} held out")

    cfg = ModelConfig(heads={"device": len(DEVICES), "word": len(WORDS)})
    vocab = build_vocab(training_vocabulary())
    cfg.encoder = EncoderConfig(vocab_size=len(vocab), audio_band_norm=band_norm)
    cfg.fusion = fusion_cfg or FusionConfig()
    audio_pool = load_audio_pool(train_clips + synthetic, cfg.audio)
    photo_pool = load_photo_pool(train_photos, cfg.image)
    sampler = VoiceControlSampler(audio_pool, photo_pool, vocab, cfg.audio, cfg.image, cfg.text.max_tokens, train)

    # channels_last: the convolutions run ~30% faster on CPU (same numbers, another memory layout).
    model = MultimodalModel(cfg).to(memory_format=torch.channels_last)
    # bf16: the encoders' convolutions and GRUs run ~1.8x faster on a CPU with AVX512-BF16; the rest stays float32.
    model.encoder_autocast = torch.bfloat16 if train.precision == "bf16" else None
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=train.lr, total_steps=train.steps, pct_start=0.15)
    index = torch.tensor(action_index_matrix())
    model.train()
    warmup_steps = int(train.warmup_share * train.steps)
    bar = tqdm(range(train.steps), desc="train")
    for step in bar:
        if step < warmup_steps:
            # Warm-up: one encoder per batch (cheap), each head taught by the input that carries it.
            modality = WARMUP_CYCLE[step % len(WARMUP_CYCLE)]
            inputs, targets = sampler.sample_unimodal(modality, 2 * train.batch_size)
            output = model(inputs)
            heads = {"image": ("device",), "audio": ("word",), "text": ("device", "word")}[modality]
            losses = {h: F.cross_entropy(output.logits[h], targets[h], label_smoothing=0.05) for h in heads}
            loss = sum(losses.values())
            loss_device, loss_word = losses.get("device", loss), losses.get("word", loss)
        else:
            # Fusion: every modality present or not per sample (modality dropout), some replaced by noise.
            inputs, present, targets, noised = sampler.sample(train.batch_size)
            tokens = model.encode(inputs, present, skip_absent=train.skip_absent_rows)
            fusion = model.fusion(tokens)
            logits = model.forward_head(fusion.fused)
            loss_device = F.cross_entropy(logits["device"], targets["device"], label_smoothing=0.05)
            loss_word = F.cross_entropy(logits["word"], targets["word"], label_smoothing=0.05)
            truth = index[targets["device"], targets["word"]]  # (B,) action ids

            def true_action_prob(head_logits: dict[str, torch.Tensor]) -> torch.Tensor:
                p = action_probs(head_logits["device"].softmax(-1), head_logits["word"].softmax(-1), index)
                return p.gather(1, truth[:, None])[:, 0]

            loss_action = -true_action_prob(logits).clamp_min(1e-8).log().mean()
            loss = loss_device + loss_word + 0.5 * loss_action
            if train.rank_weight > 0:
                # The modality whose removal hurts most must carry the largest weight (mbm.removal_loss).
                loss = loss + train.rank_weight * removal_rank_loss(model, tokens, fusion.modality_weights,
                                                                    true_action_prob, margin=train.rank_margin)
            if train.effect_weight > 0:
                # The modality weights should follow the measured effect of removing each input.
                loss = loss + train.effect_weight * removal_effect_loss(
                    model, tokens, fusion.modality_weights, true_action_prob, temperature=train.effect_temperature)
            if train.noised_weight > 0:
                # An input replaced by noise tells nothing: its weight should say so.
                loss = loss + train.noised_weight * noised_input_weight_loss(fusion.modality_weights, noised,
                                                                             model.modalities)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", dev=f"{loss_device.item():.2f}", word=f"{loss_word.item():.2f}")

    model.encoder_autocast = None  # evaluated, saved and served in float32
    if train.reattend_after_training:
        # Trained on the cheap evidence; evaluated and served with the exact one (attention re-run
        # without each input). The weights are the same; only how the gate's evidence is measured changes.
        cfg.fusion.evidence_reattend = True
        model.fusion.reattend = True
    if train.evidence_gain_after_training:
        # The gate was trained alone; the checkpoint adds gain x the whole answer's measured loss
        # without each input to its scores (mbm.fusion, FusionConfig.evidence_gain).
        cfg.fusion.evidence_gain = model.fusion.evidence_gain = train.evidence_gain_after_training

    ckpt = Checkpoint(scenario="voice_control", config=cfg, labels={"device": list(DEVICES), "word": list(WORDS)},
                      vocab=vocab, extra={"actions": list(ACTIONS), "action_index": action_index_matrix()},
                      state_dict=model.state_dict())
    model.eval()
    ckpt.metrics = {"heldout": evaluate_voice_control(ckpt, held_clips, held_photos),
                    "train_config": vars(train), "data": str(data_dir)}
    save_checkpoint(ckpt, out)
    return ckpt


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--scenario=portrait" in argv or ("--scenario" in argv and argv[argv.index("--scenario") + 1:][:1] == ["portrait"]):
        from mbm.portrait_train import main as portrait_main  # pretrained features + fusion: its own trainer

        return portrait_main(argv)
    parser = argparse.ArgumentParser(description="Train an mbm scenario model from scratch.")
    parser.add_argument("--scenario", required=True, choices=("voice_control",))
    parser.add_argument("--data", type=Path, required=True, help="folder laid out like ../shared/data")
    parser.add_argument("--out", type=Path, help="checkpoint path (default checkpoints/<scenario>.pt)")
    parser.add_argument("--tts-dir", type=Path, default=Path("cache/tts"), help="synthetic speech cache")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--tts-seed", type=int, default=None,
                        help="seed of the synthetic speech plan (voices, speeds, pitches); default: --seed")
    parser.add_argument("--rank-weight", type=float, default=TrainConfig.rank_weight,
                        help="weight of the loss tying modality weights to removal effects (0 = off)")
    parser.add_argument("--rank-margin", type=float, default=TrainConfig.rank_margin,
                        help="wanted log-weight gap between a more and a less useful modality")
    parser.add_argument("--effect-weight", type=float, default=TrainConfig.effect_weight,
                        help="weight of the loss asking the modality weights to be softmax(removal effect / T)")
    parser.add_argument("--effect-temperature", type=float, default=TrainConfig.effect_temperature,
                        help="T of that loss")
    parser.add_argument("--pooling", choices=POOLINGS, default="tokens",
                        help="fusion pooling (mbm.fusion): one softmax over all tokens, per modality, "
                             "per modality weighed jointly, or jointly from each input's measured evidence")
    parser.add_argument("--gate-evidence-only", action="store_true",
                        help="evidence pooling: the gate sees only the evidence, not the pooled vectors")
    parser.add_argument("--evidence-reattend", action="store_true",
                        help="evidence pooling: re-run the cross-modal attention without each input (exact, slower)")
    parser.add_argument("--evidence-gain-after-training", type=float, default=0.0, metavar="G",
                        help="with --pooling evidence: the checkpoint adds G x what the whole answer loses "
                             "without each input to the gate's scores (the gate is trained without it)")
    parser.add_argument("--reattend-after-training", action="store_true",
                        help="evidence pooling: train on the cheap evidence, then write the checkpoint with the "
                             "exact one (--evidence-reattend) for evaluation and the app")
    parser.add_argument("--mel-warp", type=float, default=TrainConfig.mel_warp,
                        help="largest relative stretch of the mel axis in audio augmentation (0 = off)")
    parser.add_argument("--heavy-dropout-share", type=float, default=TrainConfig.heavy_dropout_share,
                        help="share of typed texts with a word-dropout rate drawn from 0..1")
    parser.add_argument("--muffle", type=float, default=TrainConfig.muffle_share,
                        help="chance a training clip is low-passed at 0.8-3 kHz (dull microphones; 0 = off)")
    parser.add_argument("--real-share", type=float, default=TrainConfig.real_share,
                        help="chance a training clip is a real recording of its word rather than synthetic")
    parser.add_argument("--noise-modality", type=float, default=TrainConfig.noise_modality,
                        help="chance a present input is replaced by noise in fusion batches (labels unchanged)")
    parser.add_argument("--noised-weight", type=float, default=TrainConfig.noised_weight,
                        help="weight of the loss asking inputs replaced by noise for ~0 modality weight (0 = off)")
    parser.add_argument("--skip-absent-rows", action="store_true",
                        help="fusion batches: run each encoder on the samples that have its input only "
                             "(~17%% less training time; absent inputs leave BatchNorm's statistics)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=TrainConfig.precision,
                        help="bf16: run the encoders under bfloat16 autocast in training (~1.8x faster encoders "
                             "on CPUs with AVX512-BF16 or AMX; slower elsewhere); the checkpoint is float32")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-band-norm", action="store_true", help="keep the mel bands' means (older models)")
    args = parser.parse_args(argv)
    for flag, value in (("--real-share", args.real_share), ("--heavy-dropout-share", args.heavy_dropout_share),
                        ("--noise-modality", args.noise_modality), ("--muffle", args.muffle)):
        if not 0 <= value <= 1:
            parser.error(f"{flag} is a share: expected 0..1, got {value}")
    if args.effect_temperature <= 0:
        parser.error(f"--effect-temperature must be > 0, got {args.effect_temperature}")
    for flag, value in (("--rank-weight", args.rank_weight), ("--rank-margin", args.rank_margin),
                        ("--effect-weight", args.effect_weight), ("--noised-weight", args.noised_weight)):
        if value < 0:
            parser.error(f"{flag} must be >= 0, got {value}")
    if not 0 <= args.mel_warp < 1:
        parser.error(f"--mel-warp is a relative stretch: expected 0 <= value < 1, got {args.mel_warp}")
    fusion_cfg = FusionConfig(pooling=args.pooling, gate_reads_vectors=not args.gate_evidence_only,
                              evidence_reattend=args.evidence_reattend)
    try:
        fusion_cfg.validate()
    except ValueError as e:
        parser.error(f"{e} (--pooling evidence)")
    if args.reattend_after_training and (args.pooling != "evidence" or args.evidence_reattend):
        parser.error("--reattend-after-training needs --pooling evidence without --evidence-reattend "
                     "(which trains on the exact evidence already)")
    if args.evidence_gain_after_training:
        try:
            replace(fusion_cfg, evidence_gain=args.evidence_gain_after_training).validate()
        except ValueError as e:
            parser.error(f"--evidence-gain-after-training: {e}")
    torch.set_num_threads(args.threads)
    train = TrainConfig(seed=args.seed, tts_seed=args.tts_seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                        rank_weight=args.rank_weight, mel_warp=args.mel_warp,
                        heavy_dropout_share=args.heavy_dropout_share, rank_margin=args.rank_margin,
                        real_share=args.real_share, effect_weight=args.effect_weight,
                        effect_temperature=args.effect_temperature, noise_modality=args.noise_modality,
                        noised_weight=args.noised_weight, muffle_share=args.muffle,
                        skip_absent_rows=args.skip_absent_rows,
                        reattend_after_training=args.reattend_after_training,
                        evidence_gain_after_training=args.evidence_gain_after_training, precision=args.precision)
    out = args.out or Path("checkpoints") / f"{args.scenario}.pt"
    start = time.perf_counter()
    ckpt = train_voice_control(args.data, out, args.tts_dir, train, band_norm=not args.no_band_norm,
                               fusion_cfg=fusion_cfg)
    print(json.dumps(ckpt.metrics["heldout"], indent=1))
    print(f"wrote {out} in {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
