"""Train the voice-control fusion model from scratch and write its checkpoint.

    python -m mbm.train --scenario voice_control --data ../shared/data       # the shipped recipe
    torchrun --standalone --nproc_per_node=2 -m mbm.train --scenario voice_control --data DIR   # DDP

Seeded; shows tqdm progress; generates the text-to-speech clips first when they
are missing (``--tts-dir``). Held-out speakers and photos (see
:mod:`mbm.data.readers`) never enter training; the metrics stored in the
checkpoint are measured on them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from mbm.checkpoint import Checkpoint, save_checkpoint
from mbm.config import FusionConfig, ModelConfig, TrainConfig
from mbm.data import tts
from mbm.data.readers import list_device_photos, list_speech_clips, split_photos, split_speech, tts_clips
from mbm.model import MultimodalModel
from mbm.paths import CACHE, CHECKPOINTS
from mbm.preprocess import build_vocab
from mbm.scenarios.voice_control.data import (
    VoiceControlSampler,
    kept_apart,
    load_audio_pool,
    load_photo_pool,
)
from mbm.scenarios.voice_control.evaluate import evaluate_voice_control
from mbm.scenarios.voice_control.model import build_model, model_config
from mbm.scenarios.voice_control.spec import WORDS, training_vocabulary
from mbm.scenarios.voice_control.trained_checkpoint import finish_training, trained_checkpoint
from mbm.scenarios.voice_control.training_loss import VoiceControlLoss

WARMUP_CYCLE = ("image", "audio", "image", "audio", "image", "text")  # modality of each warm-up batch, in turn


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_voice_control(data_dir: Path, out: Path, tts_dir: Path, train: TrainConfig,
                        fusion_cfg: FusionConfig) -> Checkpoint:
    """Train the voice-control model; under torchrun each rank draws its own batches (seed + rank).

    Every rank returns the trained checkpoint; only rank 0 evaluates it and writes ``out``.
    """
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    seed_everything(train.seed + 1000 * rank)
    train_clips, held_clips, train_photos, held_photos = _split_data(data_dir, train)
    synthetic = _synthetic_speech(tts_dir, train, rank, world)
    print(f"real clips: {len(train_clips)} train / {len(held_clips)} held out; synthetic: {len(synthetic)}; "
          f"photos: {len(train_photos)} train / {len(held_photos)} held out")

    cfg, vocab = _model_config(train, fusion_cfg)
    audio_pool = load_audio_pool(train_clips + synthetic, cfg.audio)
    photo_pool = load_photo_pool(train_photos, cfg.image)
    # Each rank samples its own batches: the generated data's equivalent of a DistributedSampler shard.
    sampler = VoiceControlSampler(audio_pool, photo_pool, vocab, cfg.audio, cfg.image, cfg.text.max_tokens,
                                  replace(train, seed=train.seed + 1000 * rank))

    # channels_last: the convolutions run ~30% faster on CPU (same numbers, another memory layout).
    model = build_model(cfg).to(memory_format=torch.channels_last)
    # bf16: the encoders' convolutions and GRUs run ~1.8x faster on a CPU with AVX512-BF16; the rest stays float32.
    model.encoder_autocast = torch.bfloat16 if train.precision == "bf16" else None
    if train.init_from:
        _warm_start(model, train.init_from)
    image_fit = None
    if cfg.encoder.image_backbone != "cnn":
        from mbm.scenarios.voice_control.image_cache import pretrained_image_side

        sampler, image_fit = pretrained_image_side(model, cfg, vocab, audio_pool, photo_pool, train_photos, data_dir,
                                                   train, rank)
    teacher = _teacher(model, train) if train.word_distill else None
    _optimise(model, VoiceControlLoss(model, train, teacher), sampler, train, rank)
    finish_training(model, cfg, train)
    ckpt = trained_checkpoint(model, cfg, vocab, image_fit)
    model.eval()
    if rank == 0:  # one writer: the ranks hold the same weights (DDP)
        ckpt.metrics = {"heldout": evaluate_voice_control(ckpt, held_clips, held_photos, data_dir=data_dir),
                        "train_config": asdict(train), "data": str(data_dir), "world_size": world}
        save_checkpoint(ckpt, out)
    return ckpt


def _split_data(data_dir: Path, train: TrainConfig) -> tuple[list, list, list, list]:
    """The real speech clips and device photos, split into training and held-out (speakers and photos apart)."""
    clips = list_speech_clips(data_dir)
    photos = list_device_photos(data_dir)
    if not clips or not photos:
        raise SystemExit(f"{data_dir} holds no speech clips or device photos (expected speech_commands/, fsdd/, "
                         "devices/)")
    train_clips, held_clips = split_speech(clips)
    train_photos, held_photos = split_photos(photos)
    if train.image_backbone != "cnn":  # the pretrained image side never sees the kept-apart sources
        train_photos = kept_apart(train_photos)[0]
    return train_clips, held_clips, train_photos, held_photos


def _synthetic_speech(tts_dir: Path, train: TrainConfig, rank: int, world: int) -> list:
    """The text-to-speech clips of the command words: rendered by rank 0 (when missing), then read by all.
    Exactly the planned clips (the cache may hold others from earlier plans)."""
    tts_seed = train.seed if train.tts_seed is None else train.tts_seed
    if rank != 0:
        dist.barrier()  # rank 0 renders the synthetic speech first; the others then find it on disk
    synthetic = tts_clips(tts.generate(list(WORDS), tts_dir, per_word=train.tts_per_word, seed=tts_seed,
                                       progress=tqdm if rank == 0 else None))
    if rank == 0 and world > 1:
        dist.barrier()
    return synthetic


def _model_config(train: TrainConfig, fusion_cfg: FusionConfig) -> tuple[ModelConfig, dict]:
    """The model's configuration (two heads: device and word) and the text vocabulary."""
    vocab = build_vocab(training_vocabulary())
    return model_config(len(vocab), fusion_cfg, train.image_backbone, train.image_size), vocab


def _warm_start(model: MultimodalModel, init_from: str) -> None:
    """Start from every weight of ``init_from``'s checkpoint of the same name and shape (e.g. audio, text,
    fusion, heads)."""
    from mbm.checkpoint import load_checkpoint

    own = model.state_dict()
    start = {k: v for k, v in load_checkpoint(init_from, "voice_control").state_dict.items()
             if k in own and own[k].shape == v.shape}
    model.load_state_dict(start, strict=False)
    print(f"warm start from {init_from}: {len(start)} of {len(own)} tensors")


def _teacher(model: MultimodalModel, train: TrainConfig) -> MultimodalModel:
    """Stage 1's model (the checkpoint training starts from), frozen: its word answer to speech alone is kept
    while the fusion relearns the photos."""
    from mbm.checkpoint import load_checkpoint

    if not train.init_from:
        raise ValueError("word_distill needs init_from: the teacher is the checkpoint training starts from")
    teacher = load_checkpoint(train.init_from, "voice_control").build_model().eval().requires_grad_(False)
    teacher.encoder_autocast = model.encoder_autocast
    return teacher


def _optimise(model: MultimodalModel, step_loss: nn.Module, sampler, train: TrainConfig, rank: int) -> None:
    """The training loop: AdamW with a one-cycle schedule; warm-up batches of one input each, then fused batches
    (modality dropout, noise). Under torchrun the gradients are averaged over the ranks by DDP."""
    if dist.is_initialized():  # torchrun: gradients averaged over the ranks by DDP; buffers follow rank 0
        step_loss = DistributedDataParallel(step_loss, find_unused_parameters=True)  # warm-up uses one encoder
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=train.lr, total_steps=train.steps, pct_start=0.15)
    model.train()
    warmup_steps = int(train.warmup_share * train.steps)
    bar = tqdm(range(train.steps), desc="train", disable=rank != 0)
    for step in bar:
        if step < warmup_steps:
            # Warm-up: one encoder per batch (cheap), each head taught by the input that carries it.
            modality = WARMUP_CYCLE[step % len(WARMUP_CYCLE)]
            inputs, targets = sampler.sample_unimodal(modality, 2 * train.batch_size)
            loss, loss_device, loss_word = step_loss(inputs, targets, modality=modality)
        else:
            # Fusion: every modality present or not per sample (modality dropout), some replaced by noise.
            inputs, present, targets, _ = sampler.sample(train.batch_size)
            loss, loss_device, loss_word = step_loss(inputs, targets, present=present)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", dev=f"{loss_device.item():.2f}", word=f"{loss_word.item():.2f}")


RECIPE = Path(__file__).resolve().parent / "recipe.json"  # the shipped checkpoint's recipe


def load_recipe(path: Path) -> tuple[TrainConfig, FusionConfig]:
    """A recipe file -> (TrainConfig, FusionConfig); every field required, unknown ones refused."""
    recipe = json.loads(Path(path).read_text(encoding="utf-8"))
    configs = []
    for key, klass in (("train", TrainConfig), ("fusion", FusionConfig)):
        names = {f.name for f in fields(klass)}
        given = recipe.get(key, {})
        odd = sorted(set(given) - names)
        if odd:
            raise ValueError(f"{path}: unknown {key} fields {odd}")
        configs.append(klass(**given))
    return configs[0], configs[1]


def main(argv: list[str]) -> Checkpoint:
    """``python -m mbm.train --scenario voice_control --data DIR [overrides]``; under torchrun, DDP.

    Returns the trained checkpoint (every rank holds the same weights).
    """
    parser = argparse.ArgumentParser(description="Train a scenario's model with its shipped recipe "
                                                 "(recipe.json beside this file); options override it.")
    parser.add_argument("--scenario", required=True, choices=("voice_control",))
    parser.add_argument("--data", type=Path, required=True, help="folder laid out like ../shared/data")
    parser.add_argument("--out", type=Path, help="checkpoint path (default checkpoints/<scenario>.pt)")
    parser.add_argument("--recipe", type=Path, help="recipe file (default: recipe.json beside this module)")
    parser.add_argument("--tts-dir", type=Path, default=CACHE / "tts", help="synthetic speech cache")
    parser.add_argument("--steps", type=int, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, help="batch size per process")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--tts-seed", type=int, help="seed of the synthetic speech plan (voices, speeds, pitches)")
    parser.add_argument("--tts-per-word", type=int, help="synthetic clips per command word")
    parser.add_argument("--real-share", type=float, help="chance a training clip is a real recording (0..1)")
    parser.add_argument("--precision", choices=("fp32", "bf16"),
                        help="bf16: the encoders train under bfloat16 autocast (~1.8x faster on CPUs with "
                             "AVX512-BF16 or AMX; slower elsewhere); the checkpoint is float32")
    parser.add_argument("--image-backbone", choices=("cnn", "efficientnet_lite0"),
                        help="image encoder: the from-scratch CNN or the pretrained EfficientNet-Lite0")
    parser.add_argument("--image-size", type=int, help="photo side the model sees (pixels)")
    parser.add_argument("--image-views", type=int, help="efficientnet_lite0: cached views of each training photo")
    parser.add_argument("--init-from", help="start from the weights of this checkpoint that fit (warm start)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads per process")
    args = parser.parse_args(argv)
    try:
        train, fusion_cfg = load_recipe(args.recipe or RECIPE)
        fusion_cfg.validate()
    except (OSError, ValueError, TypeError) as e:
        parser.error(f"recipe: {e}")
    overrides = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "seed", "tts_seed", "tts_per_word",
                                               "real_share", "precision", "image_backbone", "image_size", "image_views", "init_from")
                 if getattr(args, k) is not None}
    train = replace(train, **overrides)
    if not 0 <= train.real_share <= 1:
        parser.error(f"--real-share is a share: expected 0..1, got {train.real_share}")
    for name in ("steps", "batch_size", "tts_per_word"):
        if getattr(train, name) < (0 if name == "tts_per_word" else 1):
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(train, name)}")
    torch.set_num_threads(args.threads)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun: one process per rank
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    out = args.out or CHECKPOINTS / f"{args.scenario}.pt"
    start = time.perf_counter()
    try:
        ckpt = train_voice_control(args.data, out, args.tts_dir, train, fusion_cfg)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if "heldout" in ckpt.metrics:  # rank 0
        print(json.dumps(ckpt.metrics["heldout"], indent=1))
        print(f"wrote {out} in {(time.perf_counter() - start) / 60:.1f} min")
    return ckpt
