"""Stage 3 of voice control: typed text read by the pretrained MiniLM (the recipe's ``"train_only": "text"``).

The stage-2 model (``init_from``) keeps every weight; its word-id text encoder is replaced by
:class:`mbm.features.text_encoder.PretrainedTextEncoder` and only that encoder's linear map is trained,
through the frozen fusion and heads as they are served (exact evidence). So an answer from speech and
photo alone is the stage-2 model's, bit for bit; only answers with typed text change.

The audio and photo tokens of the training clips and photos are computed once (the frozen encoders, no
augmentation); each batch then draws (device, word) pairs, a clip and a photo for them, a typed command in
the training phrasings (some words dropped, some texts random word pieces with the labels unchanged: the
text must then say nothing), and which inputs are present, as the stage-2 sampler does. The first
``warmup_share`` of the steps are batches of typed text alone, as stage 1's warm-up has.
"""

from __future__ import annotations

import random
from dataclasses import replace

import torch
from tqdm import tqdm

from mbm.checkpoint import Checkpoint, load_checkpoint
from mbm.config import TrainConfig
from mbm.encoders import Tokens
from mbm.features.text_encoder import FIRST_WORD_PIECE, MINILM_VOCAB
from mbm.scenarios.voice_control.eval_inputs import encode_clips, encode_photos
from mbm.scenarios.voice_control.model import build_model
from mbm.scenarios.voice_control.spec import DEVICES, SUPPORTED_PAIRS, WORDS, make_typed_command
from mbm.scenarios.voice_control.training_loss import VoiceControlLoss

ENCODE_BATCH = 128


@torch.no_grad()
def frozen_tokens(encoder, inputs: torch.Tensor) -> Tokens:
    """Inputs (N, ...) -> the frozen encoder's Tokens, in batches."""
    outs = [encoder(inputs[s:s + ENCODE_BATCH]) for s in range(0, len(inputs), ENCODE_BATCH)]
    return Tokens(torch.cat([o.tokens for o in outs]), torch.cat([o.mask for o in outs]))


class TextStageSampler:
    """Batches of (token indices of a clip and a photo, typed command ids, presence, targets)."""

    def __init__(self, clip_words: torch.Tensor, clip_real: torch.Tensor, photo_devices: torch.Tensor,
                 train: TrainConfig, max_tokens: int):
        from mbm.features.minilm import text_encoder

        self.tokenizer = text_encoder().tokenizer
        self.train, self.max_tokens = train, max_tokens
        self.rng = random.Random(train.seed)
        self.clips = [torch.nonzero(clip_words == w).flatten().tolist() for w in range(len(WORDS))]
        self.real = [torch.nonzero((clip_words == w) & clip_real).flatten().tolist() for w in range(len(WORDS))]
        self.photos = [torch.nonzero(photo_devices == d).flatten().tolist() for d in range(len(DEVICES))]

    def text_ids(self, device: str, word: str) -> list[int]:
        """A typed command's word pieces; some words dropped; sometimes random pieces (labels unchanged)."""
        t, rng = self.train, self.rng
        if rng.random() < t.noise_modality:
            return [rng.randrange(FIRST_WORD_PIECE, MINILM_VOCAB) for _ in range(rng.randint(1, 6))]
        r = rng.random()
        names_device, names_word = (True, True) if r < 0.5 else (False, True) if r < 0.8 else (True, False)
        words = make_typed_command(rng, device, word, names_device, names_word).text.split()
        kept = [w for w in words if rng.random() >= t.word_dropout] or words[:1]
        return self.tokenizer.encode(" ".join(kept), add_special_tokens=False).ids[:self.max_tokens]

    def sample(self, batch_size: int, text_alone: bool = False):
        """(clip rows (B,), photo rows (B,), text ids (B, L), present {m: (B,)}, targets {head: (B,)});
        ``text_alone``: a warm-up batch, typed text only (what it does not name gets a random label)."""
        t, rng = self.train, self.rng
        devices, words, clips, photos, texts = [], [], [], [], []
        present = {m: torch.zeros(batch_size, dtype=torch.bool) for m in ("audio", "image", "text")}
        for i in range(batch_size):
            if rng.random() < t.unsupported_share:
                d, w = rng.randrange(len(DEVICES)), rng.randrange(len(WORDS))
            else:
                dn, wn = rng.choice(SUPPORTED_PAIRS)
                d, w = DEVICES.index(dn), WORDS.index(wn)
            devices.append(d)
            words.append(w)
            real = self.real[w]
            clips.append(rng.choice(real if real and rng.random() < t.real_share else self.clips[w]))
            photos.append(rng.choice(self.photos[d]))
            texts.append(self.text_ids(DEVICES[d], WORDS[w]))
            present["audio"][i] = not text_alone and rng.random() < t.modality_keep
            present["image"][i] = not text_alone and rng.random() < t.modality_keep
            present["text"][i] = rng.random() < t.text_keep or not (present["audio"][i] or present["image"][i])
        ids = torch.zeros(batch_size, max(1, max(map(len, texts))), dtype=torch.long)  # (B, L), 0 = padding
        for i, x in enumerate(texts):
            ids[i, :len(x)] = torch.tensor(x, dtype=torch.long)
        return (torch.tensor(clips), torch.tensor(photos), ids, present,
                {"device": torch.tensor(devices), "word": torch.tensor(words)})


def train_text_stage(train: TrainConfig, audio_clips: list, photos: list) -> Checkpoint:
    """The stage-2 checkpoint ``train.init_from`` with its text encoder replaced by MiniLM + a linear map
    trained ``train.steps`` steps with stage 2's loss (``VoiceControlLoss``: both heads, the action, the weights
    pulled towards each input's measured effect); every other weight unchanged."""
    start = load_checkpoint(train.init_from, "voice_control", build=build_model)
    cfg = start.config
    cfg.encoder = replace(cfg.encoder, text_backbone="minilm")
    model = build_model(cfg)
    own = model.state_dict()
    kept = {k: v for k, v in start.state_dict.items() if not k.startswith("encoders.text.")}
    missing, unexpected = model.load_state_dict(kept, strict=False)
    assert not unexpected and all(k.startswith("encoders.text.") for k in missing), (missing, unexpected)
    model.eval().requires_grad_(False)
    text = model.encoders["text"]
    trained = [text, model.fusion.modality_gate]  # the text map, and the gate that weighs the inputs
    for module in trained:
        module.requires_grad_(True)
    mels, clips = encode_clips(audio_clips, cfg.audio)
    pixels, kept_photos = encode_photos(photos, cfg.image)
    audio = frozen_tokens(model.encoders["audio"], mels)  # (Nc, Ta, D)
    image = frozen_tokens(model.encoders["image"], pixels)  # (Np, Ti, D)
    del mels, pixels
    sampler = TextStageSampler(torch.tensor([WORDS.index(c.word) for c in clips]),
                               torch.tensor([c.source != "tts" for c in clips]),
                               torch.tensor([DEVICES.index(p.device) for p in kept_photos]), train, cfg.text.max_tokens)
    params = [w for module in trained for w in module.parameters()]
    print(f"text stage: {len(clips)} clips, {len(kept_photos)} photos; training {sum(w.numel() for w in params)} "
          f"weights (the text map and the gate), {len(own) - len(params)} tensors frozen")
    opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=train.lr, total_steps=train.steps, pct_start=0.15)
    bar = tqdm(range(train.steps), desc="text stage")
    warmup_steps = int(train.warmup_share * train.steps)
    step_loss = VoiceControlLoss(model, train)  # stage 2's loss: both heads, the action, weights vs effects
    for step in bar:  # warm-up: typed text alone; then with the clips and photos, each present or not
        c, p, ids, present, targets = sampler.sample(train.batch_size, text_alone=step < warmup_steps)
        for module in trained:  # dropout where trained (the removal loss leaves the whole model in eval mode)
            module.train()
        tokens = {"audio": audio.rows(c).keep_rows(present["audio"]), "image": image.rows(p).keep_rows(present["image"]),
                  "text": text(ids).keep_rows(present["text"])}
        loss = step_loss.from_tokens(tokens, targets, "text" if step < warmup_steps else None)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return Checkpoint(scenario="voice_control", config=cfg, labels=start.labels, vocab=[], extra=start.extra,
                      state_dict=model.state_dict())
