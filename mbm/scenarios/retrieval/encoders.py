"""The frozen encoders of retrieval: photo, text, speech (what was said) and their raw features.

- photo: EfficientNet-Lite0 (ImageNet, ``mbm.features.efficientnet``) at 224 px: the head's 1280-channel
  grid averaged (1280) and the ImageNet class probabilities (1000).
- text: all-MiniLM-L6-v2 (``mbm.scenarios.retrieval.text``, 384). A query is searched with its MiniLM
  vector alone (through the caption anchors, ``mbm.scenarios.retrieval.model.Space.text_sem``); in
  training the text head also gets a ConSE bridge: the text's similarity to the 1000 ImageNet class
  names (timm's ``ImageNetInfo``, the first synonym of each), softmax-sharpened (Norouzi et al. 2014).
- speech: PocketSphinx 5.1.1 (US-English model inside the wheel) with a JSGF grammar built from the
  collection's vocabulary (its captions, the device names and paraphrases, the ImageNet names); the
  transcript is then a text query. Who spoke is Resemblyzer (``mbm.scenarios.portrait.features``).
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import torch

from mbm.errors import InputError
from mbm.features import efficientnet as _efficientnet

IMAGE_SIZE = 224
IMAGE_DIM = 1280  # EfficientNet-Lite0's pooled head features
# Names the photo features: part of every cached feature file's key (mbm.scenarios.retrieval.data), so
# features of another backbone, weight file or size are never reused.
PHOTO_BACKBONE = f"{_efficientnet.BACKBONE}/sha256:{_efficientnet.SHA256[:16]}/{IMAGE_SIZE}px/mean+softmax"
N_CLASSES = 1000
TEXT_DIM = 384
CONSE_TEMPERATURE = 0.05
MAX_SPEECH_SECONDS = 10.0  # a longer clip is cut (and the user told): the grammar expects one phrase


def imagenet_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in the classifier's order (timm's public ``ImageNetInfo``)."""
    from mbm.features.efficientnet import imagenet_names as names

    return names()


@lru_cache(maxsize=1)
def _photo_network():
    """The frozen ImageNet EfficientNet-Lite0 in channels-last memory (faster on CPU: 35 against 60 ms a
    photo in batches of 32 on one thread). A copy, so the shared network's layout is left alone."""
    import copy

    from mbm.features.efficientnet import pretrained_efficientnet

    return copy.deepcopy(pretrained_efficientnet()).to(memory_format=torch.channels_last)


def load_photo(source) -> np.ndarray:
    """A path / bytes / PIL / array -> (224, 224, 3) uint8 RGB (shorter side resized, centre crop)."""
    from PIL import Image

    from mbm.config import ImageConfig
    from mbm.preprocess import read_image

    img = read_image(source, ImageConfig(size=IMAGE_SIZE))
    w, h = img.size
    if min(w, h) < 8:
        raise InputError(f"the photo is only {w}x{h} pixels")
    s = min(w, h)
    box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
    return np.asarray(img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR, box=box,
                                 reducing_gap=2.0), dtype=np.uint8)


@torch.inference_mode()
def photo_features(photos: list[np.ndarray], batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(N, 224, 224, 3) uint8 -> (pooled EfficientNet-Lite0 head (N, 1280), ImageNet probabilities (N, 1000)),
    float32."""
    from mbm.features.efficientnet import features, uint8_to_input

    net = _photo_network()
    pooled, probs = [], []
    for s in range(0, len(photos), batch):
        x = uint8_to_input(torch.from_numpy(np.stack(photos[s:s + batch])).permute(0, 3, 1, 2))
        feats, logits = features(net, x.contiguous(memory_format=torch.channels_last))
        pooled.append(feats.float().numpy())
        probs.append(logits.float().softmax(1).numpy())
    if not pooled:
        return np.zeros((0, IMAGE_DIM), np.float32), np.zeros((0, N_CLASSES), np.float32)
    return np.concatenate(pooled), np.concatenate(probs)


@lru_cache(maxsize=1)
def class_name_vectors() -> np.ndarray:
    """Unit MiniLM vectors (1000, 384) of "a photo of a <ImageNet class name>" (ConSE; the off-topic check)."""
    from mbm.scenarios.retrieval.text import text_encoder

    return text_encoder().encode([f"a photo of a {n}" for n in imagenet_names()])


def text_vectors(texts: list[str]) -> np.ndarray:
    """Texts -> unit MiniLM vectors (N, 384): what a text query or caption is searched with."""
    from mbm.scenarios.retrieval.text import text_encoder

    return text_encoder().encode(list(texts)) if texts else np.zeros((0, TEXT_DIM), np.float32)


def text_features(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (MiniLM (N, 384), ConSE class distribution (N, 1000)): the text head's input in training."""
    v = text_vectors(texts)
    if not len(v):
        return v, np.zeros((0, N_CLASSES), np.float32)
    sims = torch.from_numpy(v @ class_name_vectors().T)
    return v, (sims / CONSE_TEMPERATURE).softmax(1).numpy()


def text_language_note(text: str) -> str | None:
    """A note when a text is mostly outside the English model's reach (another script, unknown words)."""
    from mbm.scenarios.retrieval.text import text_encoder

    letters = [c for c in text if c.isalpha()]
    if letters and sum(ord(c) > 0x24F for c in letters) / len(letters) > 0.5:
        return ("this text is mostly in a non-Latin script; the text model was trained on English, "
                "so it may match poorly")
    if text_encoder().tokenizer.unknown_share(text) > 0.5:
        return "most words of this text are unknown to the English text model; it may match poorly"
    return None


# --- speech: what was said ----------------------------------------------------------------------

BASE_PHRASES = ("blinds", "curtains", "window shade", "door", "front door", "fan", "ceiling fan", "desk fan",
                "tower fan", "heater", "space heater", "radiator", "lamp", "table lamp", "desk lamp",
                "floor lamp", "reading light", "light", "music player", "radio", "stereo", "boombox",
                "cd player", "cassette player", "speaker", "tv", "television", "monitor", "screen")


FILLERS = frozenset(("a", "an", "the", "some"))
NOISE_FLOOR = 3e-3  # std of the noise added before decoding (measured by voice: docs/retrieval.md)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


class SpeechRecognizer:
    """PocketSphinx with a JSGF grammar of whole phrases: the vocabulary's phrases (a caption, a class
    name), and the base phrases, each optionally after "a/an/the/some"; phrases
    with a word outside its dictionary are dropped. A phrase grammar is far more exact than a loop of
    single words (measured: "television" -> "and bee to and" with a word loop)."""

    def __init__(self, vocabulary: list[str] | tuple[str, ...] = ()):
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=16000, loglevel="FATAL", cmn="batch")  # batch CMN: no drift between queries
        phrases = {" ".join(_words(p)[:8]) for p in (*BASE_PHRASES, *vocabulary)}
        self.phrases = sorted(p for p in phrases if p and all(self.decoder.lookup_word(w) is not None
                                                              for w in p.split()))
        grammar = ("#JSGF V1.0;\ngrammar vocab;\npublic <s> = [a | an | the | some] <p> ;\n<p> = "
                   + " | ".join(self.phrases) + " ;\n")
        self.decoder.add_jsgf_string("vocab", grammar)
        self.decoder.activate_search("vocab")

    def transcribe(self, wave16k: np.ndarray) -> str:
        """A 16 kHz wave peak-normalised to 0.7 -> the phrase heard ("" if none)."""
        # Synthetic, edited and browser-recorded audio holds stretches of exact digital silence, where
        # PocketSphinx's log-energy features degenerate and it decodes nothing. So: the silence before
        # and after the sound is cut (0.15 s kept; a long one would also skew the batch normalisation),
        # then a fixed faint noise floor is added (-47 dB under the peak; a microphone has its own).
        loud = np.flatnonzero(np.abs(wave16k) > 1e-3 * max(float(np.abs(wave16k).max()), 1e-8))
        if len(loud):
            wave16k = wave16k[max(0, loud[0] - 2400):loud[-1] + 2400]
        floor = NOISE_FLOOR * np.random.default_rng(0).standard_normal(len(wave16k)).astype(np.float32)
        pcm = (np.clip(wave16k + floor, -1, 1) * 32767).astype(np.int16).tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        words = (hyp.hypstr if hyp is not None else "").split()
        # a partial path that never reached a phrase ("the") carries nothing
        return "" if all(w in FILLERS for w in words) else " ".join(words)


@lru_cache(maxsize=8)
def recognizer(vocabulary: tuple[str, ...] = ()) -> SpeechRecognizer:
    return SpeechRecognizer(vocabulary)


def speech_wave(source) -> tuple[np.ndarray, list[str]]:
    """A path / bytes / (rate, array) -> 16 kHz mono float32 peak-normalised, and notes (cut, ...)."""
    import soxr

    from mbm.preprocess import read_audio

    samples, rate = read_audio(source)
    samples = np.asarray(samples, np.float32)
    if samples.ndim == 2:
        samples = samples.mean(1)
    if samples.size == 0 or not np.all(np.isfinite(samples)):
        raise InputError("the voice clip is empty or invalid; record or upload a few words")
    notes = []
    if rate != 16000:
        samples = soxr.resample(samples, rate, 16000).astype(np.float32)
    from mbm.limits import MAX_AUDIO_DECODE_SECONDS

    cap = min(MAX_SPEECH_SECONDS, MAX_AUDIO_DECODE_SECONDS)  # decoding itself stops at the latter
    if len(samples) >= (cap - 0.05) * 16000:
        length = "longer than that"
        if isinstance(source, str):
            try:
                import soundfile as sf

                length = f"{sf.info(source).duration:.0f} s long"
            except Exception:  # noqa: BLE001 - an mp3 or odd header: the length stays unsaid
                pass
        notes.append(f"only the first {cap:.0f} s of the voice clip were used (it is {length})")
        samples = samples[:int(cap * 16000)]
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak < 1e-3:
        raise InputError("the voice clip is silent; record again closer to the microphone")
    return (samples * (0.7 / peak)).astype(np.float32), notes


def transcribe(source, vocabulary: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    wave, notes = speech_wave(source)
    return recognizer(tuple(sorted(set(vocabulary)))).transcribe(wave), notes
