"""In-memory pools of clips and photos, and the sampler of voice-control training batches.

A training sample is a command (device, word) realised as: a clip of the word,
a photo of the device and/or a typed text, each present or not (modality
dropout), sometimes replaced by noise so the attention learns to look away
from an input that carries nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from mbm.config import AudioConfig, ImageConfig, TrainConfig
from mbm.data import augment
from mbm.data.readers import DevicePhoto, SpeechClip
from mbm.preprocess import fit_window, log_mel, normalise_pixels, read_audio, read_image, tokenize
from mbm.scenarios.voice_control.spec import DEVICES, SUPPORTED_PAIRS, WORDS, make_typed_command

PHOTO_MARGIN = 8  # training photos are stored this many pixels larger than the model's size, for crops
UNK_ID = 1  # vocabulary id of <unk> (see mbm.preprocess.build_vocab)

# Photo sources (file-name prefixes, see ../shared/data/README.md) the pretrained image side never
# trains on, in any split, to measure photos from a source training never saw
# (`device_accuracy_kept_apart_sources`): Caltech-101 (fan, lamp) and Imagenette (music player),
# whose licences also let the demo show them, and three small shop sources (blinds, heater, tv).
# Every class keeps other sources to train on; door keeps all three of its own.
KEPT_APART_SOURCES = ("cal", "dod", "imn", "lcf", "sht")


def kept_apart(photos: list[DevicePhoto]) -> tuple[list[DevicePhoto], list[DevicePhoto]]:
    """(photos of the other sources, photos of :data:`KEPT_APART_SOURCES`)."""
    return ([p for p in photos if p.source not in KEPT_APART_SOURCES],
            [p for p in photos if p.source in KEPT_APART_SOURCES])


@dataclass
class AudioPool:
    waves: torch.Tensor  # (N, num_samples) float32 windows at the model's rate
    words: torch.Tensor  # (N,) index into WORDS
    sources: list[str]

    def by_word(self, real: bool | None = None) -> list[list[int]]:
        """Clip indices per word; ``real`` True/False keeps only real/synthetic clips."""
        keep = torch.tensor([real is None or (s != "tts") == real for s in self.sources], dtype=torch.bool)
        return [torch.nonzero((self.words == w) & keep).flatten().tolist() for w in range(len(WORDS))]


@dataclass
class PhotoPool:
    pixels: torch.Tensor  # (N, 3, S + margin, S + margin) uint8
    devices: torch.Tensor  # (N,) index into DEVICES
    sources: list[str]

    def by_device(self) -> list[list[int]]:
        return [torch.nonzero(self.devices == d).flatten().tolist() for d in range(len(DEVICES))]


def load_audio_pool(clips: list[SpeechClip], cfg: AudioConfig, desc: str = "audio") -> AudioPool:
    waves = np.zeros((len(clips), cfg.num_samples), dtype=np.float32)
    for i, clip in enumerate(tqdm(clips, desc=desc, leave=False)):
        samples, sr = read_audio(str(clip.path))
        waves[i], _ = fit_window(samples, sr, cfg)
    return AudioPool(torch.from_numpy(waves), torch.tensor([WORDS.index(c.word) for c in clips]),
                     [c.source for c in clips])


def load_photo_pool(photos: list[DevicePhoto], cfg: ImageConfig, margin: int = PHOTO_MARGIN,
                    desc: str = "photos") -> PhotoPool:
    from mbm.config import ImageConfig as _IC
    from mbm.preprocess import prepare_image

    big = _IC(size=cfg.size + margin, max_pixels=cfg.max_pixels)
    pixels = torch.zeros(len(photos), 3, big.size, big.size, dtype=torch.uint8)
    for i, photo in enumerate(tqdm(photos, desc=desc, leave=False)):
        pixels[i] = torch.from_numpy(prepare_image(read_image(str(photo.path), big), big).shown).permute(2, 0, 1)
    return PhotoPool(pixels, torch.tensor([DEVICES.index(p.device) for p in photos]), [p.source for p in photos])


class VoiceControlSampler:
    """Draws augmented multimodal training batches."""

    def __init__(self, audio: AudioPool, photos: PhotoPool, vocab: list[str], audio_cfg: AudioConfig,
                 image_cfg: ImageConfig, max_tokens: int, train: TrainConfig):
        self.audio, self.photos, self.vocab = audio, photos, vocab
        self.audio_cfg, self.image_cfg, self.max_tokens, self.train = audio_cfg, image_cfg, max_tokens, train
        self.clips_by_word = audio.by_word()
        self.real_clips_by_word = audio.by_word(real=True)
        self.photos_by_device = photos.by_device()
        self.index = {w: i for i, w in enumerate(vocab)}
        self.rng = random.Random(train.seed)
        self.g = torch.Generator().manual_seed(train.seed)
        missing = [WORDS[w] for w, ids in enumerate(self.clips_by_word) if not ids]
        assert not missing, f"no training clips for words {missing}"

    def _text_ids(self, device: str, word: str) -> tuple[list[int], bool]:
        """Token ids of a typed command for (device, word), and whether they are noise instead.

        Some words become <unk>: that teaches the model to read past phrasings it never saw.
        Some texts are random words (labels unchanged): that teaches the attention to look
        away from text that says nothing.
        """
        t = self.train
        if self.rng.random() < t.noise_modality:
            return [self.rng.randrange(2, len(self.vocab)) for _ in range(self.rng.randint(1, 6))], True
        r = self.rng.random()
        names_device, names_word = (True, True) if r < 0.5 else (False, True) if r < 0.8 else (True, False)
        cmd = make_typed_command(self.rng, device, word, names_device, names_word)
        ids = [self.index.get(tok, UNK_ID) for tok in tokenize(cmd.text)][:self.max_tokens]
        # Some texts lose many words (as phrasings the model never saw do): text then helps less, and
        # the removal loss (mbm.scenarios.voice_control.removal_loss) teaches the attention to weigh it less.
        return [UNK_ID if self.rng.random() < t.word_dropout else i for i in ids], False

    def _clip(self, word: int) -> int:
        """A clip of ``word``; real recordings are drawn more often than their share of the pool."""
        real = self.real_clips_by_word[word]
        if real and self.rng.random() < self.train.real_share:
            return self.rng.choice(real)
        return self.rng.choice(self.clips_by_word[word])

    def sample_unimodal(self, modality: str, batch_size: int):
        """A batch of one modality only (the warm-up phase): (inputs, targets).

        Targets hold random labels for what the input cannot tell (e.g. the device behind
        a text naming only the command), so the model learns to be unsure there.
        """
        devices = torch.randint(len(DEVICES), (batch_size,), generator=self.g)
        words = torch.randint(len(WORDS), (batch_size,), generator=self.g)
        if modality == "audio":
            waves = self._augment_audio([self._clip(int(w)) for w in words])
            inputs = {"audio": self._mel(waves)}
        elif modality == "image":
            ids = [self.rng.choice(self.photos_by_device[int(d)]) for d in devices]
            inputs = {"image": self._finish_images(self._image_batch(ids), None)}
        else:
            inputs = {"text": self._pad([self._text_ids(DEVICES[int(d)], WORDS[int(w)])[0]
                                         for d, w in zip(devices, words)])}
        return inputs, {"device": devices, "word": words}

    def _image_batch(self, photo_ids: list[int]) -> torch.Tensor:
        """Photo ids -> (B, 3, S, S) augmented photos, 0..255 (a subclass may return cached features)."""
        return augment.augment_images(self.photos.pixels[photo_ids].float(), self.image_cfg.size, self.g)

    def _finish_images(self, images: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Rows where ``noise`` (B,) is True become random noise; then the encoder's input."""
        if noise is not None and noise.any():
            images[noise] = torch.rand(int(noise.sum()), *images.shape[1:], generator=self.g) * 255
        return normalise_pixels(images)

    def _augment_audio(self, clip_ids: list[int]) -> torch.Tensor:
        """Clip ids -> (B, N) augmented waveforms."""
        return augment.augment_audio(self.audio.waves[clip_ids], self.g)

    def _mel(self, waves: torch.Tensor) -> torch.Tensor:
        """(B, N) augmented waveforms -> (B, n_mels, F) log-mels, SpecAugmented."""
        return augment.spec_augment(log_mel(waves, self.audio_cfg), self.g)

    @staticmethod
    def _pad(texts: list[list[int]]) -> torch.Tensor:
        ids = torch.zeros(len(texts), max(1, max(len(x) for x in texts)), dtype=torch.long)  # (B, L), 0 = pad
        for i, x in enumerate(texts):
            ids[i, :len(x)] = torch.tensor(x, dtype=torch.long)
        return ids

    def sample(self, batch_size: int):
        """Returns (inputs, present, targets, noised).

        ``targets`` holds {"device", "word"} index tensors; ``present`` and ``noised`` hold a
        (B,) bool mask per modality: the input is there / the input is there but is noise.
        """
        t = self.train
        devices, words, clip_ids, photo_ids, texts, noise_text = [], [], [], [], [], []
        present = {m: torch.zeros(batch_size, dtype=torch.bool) for m in ("audio", "image", "text")}
        for i in range(batch_size):
            if self.rng.random() < t.unsupported_share:
                d, w = self.rng.randrange(len(DEVICES)), self.rng.randrange(len(WORDS))
            else:
                dn, wn = self.rng.choice(SUPPORTED_PAIRS)
                d, w = DEVICES.index(dn), WORDS.index(wn)
            devices.append(d)
            words.append(w)
            clip_ids.append(self._clip(w))
            photo_ids.append(self.rng.choice(self.photos_by_device[d]))
            ids, is_noise = self._text_ids(DEVICES[d], WORDS[w])
            texts.append(ids)
            noise_text.append(is_noise)
            keep = {"audio": self.rng.random() < t.modality_keep, "image": self.rng.random() < t.modality_keep,
                    "text": self.rng.random() < t.text_keep}
            if not any(keep.values()):
                keep[self.rng.choice(("audio", "image", "text"))] = True
            for m, k in keep.items():
                present[m][i] = k

        waves = self._augment_audio(clip_ids)
        images = self._image_batch(photo_ids)
        # Noise in place of a present input: the labels stay, so the input must be ignored.
        noise_audio = present["audio"] & (torch.rand(batch_size, generator=self.g) < t.noise_modality)
        noise_image = present["image"] & (torch.rand(batch_size, generator=self.g) < t.noise_modality)
        if noise_audio.any():
            waves[noise_audio] = torch.randn(int(noise_audio.sum()), waves.shape[1], generator=self.g) * 0.1
        image_input = self._finish_images(images, noise_image)  # before the log-mels (same random stream)
        inputs = {"audio": self._mel(waves), "image": image_input, "text": self._pad(texts)}
        targets = {"device": torch.tensor(devices), "word": torch.tensor(words)}
        noised = {"audio": noise_audio, "image": noise_image, "text": present["text"] & torch.tensor(noise_text)}
        return inputs, present, targets, noised
