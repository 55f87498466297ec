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
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from mbm.checkpoint import Checkpoint, save_checkpoint
from mbm.config import FusionConfig, TrainConfig
from mbm.data import tts
from mbm.data.readers import list_device_photos, list_speech_clips, split_photos, split_speech, tts_clips
from mbm.model import MultimodalModel
from mbm.paths import CACHE, CHECKPOINTS
from mbm.preprocess import build_vocab
from mbm.scenarios.voice_control.data import (
    KEPT_APART_SOURCES,
    VoiceControlSampler,
    kept_apart,
    load_audio_pool,
    load_photo_pool,
)
from mbm.scenarios.voice_control.evaluate import evaluate_voice_control
from mbm.scenarios.voice_control.model import build_model, model_config
from mbm.scenarios.voice_control.removal_loss import removal_effect_loss
from mbm.scenarios.voice_control.spec import (
    ACTIONS,
    DEVICES,
    WORDS,
    action_index_matrix,
    action_probs,
    training_vocabulary,
)

WARMUP_CYCLE = ("image", "audio", "image", "audio", "image", "text")  # modality of each warm-up batch, in turn


def seed_everything(seed: int) -> None:
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
    clips = list_speech_clips(data_dir)
    photos = list_device_photos(data_dir)
    if not clips or not photos:
        raise SystemExit(f"{data_dir} holds no speech clips or device photos (expected speech_commands/, fsdd/, "
                         "devices/)")
    train_clips, held_clips = split_speech(clips)
    train_photos, held_photos = split_photos(photos)
    if train.image_backbone != "cnn":  # the pretrained image side never sees the kept-apart sources
        train_photos = kept_apart(train_photos)[0]
    # Exactly the planned clips (the cache may hold others from earlier plans).
    tts_seed = train.seed if train.tts_seed is None else train.tts_seed
    if rank != 0:
        dist.barrier()  # rank 0 renders the synthetic speech first; the others then find it on disk
    synthetic = tts_clips(tts.generate(list(WORDS), tts_dir, per_word=train.tts_per_word, seed=tts_seed,
                                       progress=tqdm if rank == 0 else None))
    if rank == 0 and world > 1:
        dist.barrier()
    print(f"real clips: {len(train_clips)} train / {len(held_clips)} held out; synthetic: {len(synthetic)}; "
          f"photos: {len(train_photos)} train / {len(held_photos)} held out")

    vocab = build_vocab(training_vocabulary())
    cfg = model_config(len(vocab), fusion_cfg, train.image_backbone, train.image_size)
    audio_pool = load_audio_pool(train_clips + synthetic, cfg.audio)
    photo_pool = load_photo_pool(train_photos, cfg.image)
    # Each rank samples its own batches: the generated data's equivalent of a DistributedSampler shard.
    sampler = VoiceControlSampler(audio_pool, photo_pool, vocab, cfg.audio, cfg.image, cfg.text.max_tokens,
                                  replace(train, seed=train.seed + 1000 * rank))

    # channels_last: the convolutions run ~30% faster on CPU (same numbers, another memory layout).
    model = build_model(cfg).to(memory_format=torch.channels_last)
    # bf16: the encoders' convolutions and GRUs run ~1.8x faster on a CPU with AVX512-BF16; the rest stays float32.
    model.encoder_autocast = torch.bfloat16 if train.precision == "bf16" else None
    if train.init_from:  # warm start: every weight of the same name and shape (e.g. audio, text, fusion, heads)
        from mbm.checkpoint import load_checkpoint

        own = model.state_dict()
        start = {k: v for k, v in load_checkpoint(train.init_from, "voice_control").state_dict.items()
                 if k in own and own[k].shape == v.shape}
        model.load_state_dict(start, strict=False)
        print(f"warm start from {train.init_from}: {len(start)} of {len(own)} tensors")
    image_fit = None
    if cfg.encoder.image_backbone != "cnn":
        # Pretrained backbone: the frozen trunk's outputs on a few views of each photo are
        # cached, the top fine-tuned and the presence head fitted on them, then the fusion trained on
        # score maps with the top fixed.
        from mbm.scenarios.voice_control.image_cache import ScoreMapSampler, prepare_pretrained_images

        maps, noise_maps, image_fit = prepare_pretrained_images(
            model.encoders["image"], photo_pool, [p.path.name for p in train_photos], data_dir, cfg.image,
            train.image_views, train.seed, CACHE)
        for module in (model.encoders["image"].top, model.encoders["image"].presence):
            module.requires_grad_(False)
        if dist.is_initialized():  # every rank fits the top itself (same seed, same photos): they must agree
            fitted = [*model.encoders["image"].top.parameters(), *model.encoders["image"].presence.parameters()]
            mine = torch.stack([p.double().sum() for p in fitted])
            first = mine.clone()
            dist.broadcast(first, src=0)
            if not torch.allclose(mine, first, rtol=1e-6, atol=1e-9):
                raise RuntimeError(f"rank {rank} fitted another EfficientNet top than rank 0: its cached score "
                                   "maps would not match the weights the checkpoint keeps")
        sampler = ScoreMapSampler(maps, noise_maps, audio_pool, photo_pool, vocab, cfg.audio, cfg.image,
                                  cfg.text.max_tokens, replace(train, seed=train.seed + 1000 * rank))
        print(f"image heads: {image_fit}")
    teacher = None
    if train.word_distill:  # stage 1's word answer to speech alone, kept while the fusion relearns the photos
        from mbm.checkpoint import load_checkpoint

        if not train.init_from:
            raise ValueError("word_distill needs init_from: the teacher is the checkpoint training starts from")
        teacher = load_checkpoint(train.init_from, "voice_control").build_model().eval().requires_grad_(False)
        teacher.encoder_autocast = model.encoder_autocast
    step_loss: nn.Module = VoiceControlLoss(model, train, teacher)
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

    model.encoder_autocast = None  # evaluated, saved and served in float32
    if dist.is_initialized():
        # DDP hands rank 0's buffers (BatchNorm statistics) to every rank before each forward; the
        # last step's update is still per rank, so hand them over once more.
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
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
    if image_fit is not None:
        from mbm.features.efficientnet import BACKBONE, REQUIREMENT, RESOURCE, SHA256

        ckpt.extra["image_backbone"] = {
            "name": BACKBONE, "weights": f"{REQUIREMENT} {'/'.join(RESOURCE)}",
            "sha256": SHA256, "frozen": "stem .. stage 5 (from the package)",
            "fine_tuned": "stage 6, conv_head + BatchNorm, classifier (in this checkpoint)",
            "preprocessing": f"RGB, shorter side {cfg.image.size}, centre crop, min-max "
            "to [-0.5, 0.5], then (x * 255 + 0.5) / 128 into EfficientNet-Lite0 ((RGB - 127) / 128)", "fit": image_fit,
            "kept_apart_sources": list(KEPT_APART_SOURCES)}
    model.eval()
    if rank == 0:  # one writer: the ranks hold the same weights (DDP)
        ckpt.metrics = {"heldout": evaluate_voice_control(ckpt, held_clips, held_photos, data_dir=data_dir),
                        "train_config": asdict(train), "data": str(data_dir), "world_size": world}
        save_checkpoint(ckpt, out)
    return ckpt


class VoiceControlLoss(nn.Module):
    """One training batch -> (loss, device loss, word loss); a module so that DDP can wrap it."""

    def __init__(self, model: MultimodalModel, train: TrainConfig, teacher: MultimodalModel | None = None):
        super().__init__()
        self.model, self.train_cfg, self.teacher = model, train, teacher
        self.register_buffer("action_index", torch.tensor(action_index_matrix()), persistent=False)

    def word_distillation(self, audio: torch.Tensor, word_logits: torch.Tensor | None = None) -> torch.Tensor:
        """KL(teacher || model) of the word answer to speech alone, (B, mels, F) clips; 0 without a teacher."""
        if self.teacher is None or not len(audio):
            return torch.zeros(())
        with torch.no_grad():
            target = self.teacher({"audio": audio}).logits["word"].log_softmax(-1)
        if word_logits is None:
            word_logits = self.model({"audio": audio}).logits["word"]
        kl = F.kl_div(word_logits.log_softmax(-1), target, log_target=True, reduction="batchmean")
        return self.train_cfg.word_distill * kl

    def forward(self, inputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                modality: str | None = None, present: dict[str, torch.Tensor] | None = None):
        model = self.model
        if modality is not None:  # warm-up: one input, the heads it carries
            output = model(inputs)
            heads = {"image": ("device",), "audio": ("word",), "text": ("device", "word")}[modality]
            losses = {h: F.cross_entropy(output.logits[h], targets[h], label_smoothing=0.05) for h in heads}
            loss = sum(losses.values())
            if modality == "audio":
                loss = loss + self.word_distillation(inputs["audio"], output.logits["word"])
            return loss, losses.get("device", loss), losses.get("word", loss)
        tokens = model.encode(inputs, present)
        fusion = model.fuse(tokens)
        logits = model.forward_head(fusion.fused)
        loss_device = F.cross_entropy(logits["device"], targets["device"], label_smoothing=0.05)
        loss_word = F.cross_entropy(logits["word"], targets["word"], label_smoothing=0.05)
        truth = self.action_index[targets["device"], targets["word"]]  # (B,) action ids

        def true_action_prob(head_logits: dict[str, torch.Tensor]) -> torch.Tensor:
            p = action_probs(head_logits["device"].softmax(-1), head_logits["word"].softmax(-1), self.action_index)
            return p.gather(1, truth[:, None])[:, 0]

        loss = loss_device + loss_word + 0.5 * -true_action_prob(logits).clamp_min(1e-8).log().mean()
        if "audio" in inputs:  # the same clips alone, as the word answer to speech alone is measured
            heard = present["audio"].bool() if present is not None and "audio" in present else slice(None)
            loss = loss + self.word_distillation(inputs["audio"][heard])
        if self.train_cfg.effect_weight > 0:
            # The modality weights should follow the measured effect of removing each input.
            loss = loss + self.train_cfg.effect_weight * removal_effect_loss(
                model, tokens, fusion.modality_weights, true_action_prob, temperature=self.train_cfg.effect_temperature)
        return loss, loss_device, loss_word


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
