"""Readers for folders laid out like ``../shared/data`` and the deterministic held-out splits.

Splits are by speaker (audio) and by photo (images), decided by a hash of the
speaker id or file name, so they are the same on every machine and for any copy
of the data, and no speaker or photo is on both sides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mbm.data.labels import DEVICES, DIGITS, WORDS

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".bmp", ".webp")


@dataclass(frozen=True)
class SpeechClip:
    path: Path
    word: str  # one of WORDS
    speaker: str
    source: str  # "speech_commands", "speech_commands_more", "fsdd" or "tts"


@dataclass(frozen=True)
class DevicePhoto:
    path: Path
    device: str  # one of DEVICES
    source: str  # file-name prefix: tin, cal, off, cur, dd ... ("other" when none)


def _hash(key: str) -> int:
    return int(hashlib.md5(key.encode()).hexdigest(), 16)


def list_speech_clips(data_dir: Path, more: bool = False) -> list[SpeechClip]:
    """Real recordings of the command words: Speech Commands (20 of its words), FSDD digits and,
    with ``more``, ``speech_commands_more/<word>/<source>_<speaker>_nohash_<n>.wav`` (source
    ``speech_commands_more``: other speakers of Speech Commands; the speaker is the second part).

    Every source's speaker id comes from the file name, so :func:`split_speech` keeps each speaker
    on one side, and adding ``more`` leaves the other sources' held-out speakers as they were (the
    split hashes per source). The shipped recipe trains without ``more`` (measured with it:
    docs/history.md, "Real voices"); ``mbm.scenarios.voice_control.speech_eval`` scores its speakers.
    """
    data_dir = Path(data_dir)
    clips = []
    sc = data_dir / "speech_commands"
    for word in WORDS:
        for path in sorted((sc / word).glob("*")) if (sc / word).is_dir() else []:
            if path.suffix.lower() in AUDIO_SUFFIXES:
                clips.append(SpeechClip(path, word, path.name.split("_")[0], "speech_commands"))
    if more:
        clips += list_more_speech_clips(data_dir)
    fsdd = data_dir / "fsdd" / "recordings"
    for path in sorted(fsdd.glob("*")) if fsdd.is_dir() else []:
        parts = path.stem.split("_")
        if path.suffix.lower() in AUDIO_SUFFIXES and len(parts) >= 2 and parts[0].isdigit() and int(parts[0]) < 10:
            clips.append(SpeechClip(path, DIGITS[int(parts[0])], parts[1], "fsdd"))
    return clips


def list_more_speech_clips(data_dir: Path) -> list[SpeechClip]:
    """``speech_commands_more/<word>/<source>_<speaker>_nohash_<n>.wav`` as clips of source ``speech_commands_more``."""
    clips = []
    for word in WORDS:
        folder = Path(data_dir) / "speech_commands_more" / word
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            parts = path.name.split("_")
            if path.suffix.lower() in AUDIO_SUFFIXES and len(parts) >= 3:
                clips.append(SpeechClip(path, word, parts[1], "speech_commands_more"))
    return clips


def tts_clips(paths: list[Path]) -> list[SpeechClip]:
    """Synthetic clips written by :mod:`mbm.data.tts` (``<word>/<voice>.wav``), from their paths."""
    return [SpeechClip(Path(p), Path(p).parent.name, Path(p).stem, "tts") for p in paths]


def list_device_photos(data_dir: Path) -> list[DevicePhoto]:
    """Every photo under ``devices/<class>/``."""
    photos = []
    for device in DEVICES:
        folder = Path(data_dir) / "devices" / device
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                source = path.name.split("_")[0] if "_" in path.name else "other"
                photos.append(DevicePhoto(path, device, source))
    return photos


def heldout_speakers(clips: list[SpeechClip], fraction: float = 0.2) -> set[str]:
    """Per source, speakers in hash order until they hold ``fraction`` of that source's clips."""
    held: set[str] = set()
    for source in sorted({c.source for c in clips}):
        counts: dict[str, int] = {}
        for c in clips:
            if c.source == source:
                counts[c.speaker] = counts.get(c.speaker, 0) + 1
        total, taken = sum(counts.values()), 0
        for speaker in sorted(counts, key=lambda s: _hash(f"{source}/{s}")):
            if taken >= fraction * total:
                break
            held.add(speaker)
            taken += counts[speaker]
    return held


def split_speech(clips: list[SpeechClip], fraction: float = 0.2):
    """(train, held_out) with no speaker on both sides."""
    held = heldout_speakers(clips, fraction)
    return [c for c in clips if c.speaker not in held], [c for c in clips if c.speaker in held]


# Sources whose training speakers lend a fifth to the validation split (choices are made on it, the
# held-out split is scored once at the end): Speech Commands' many new voices. FSDD has four training
# speakers and speech_commands/ ten clips a word; both stay whole in training.
VALIDATION_SOURCES = ("speech_commands_more",)


def split_validation(train_clips: list[SpeechClip], fraction: float = 0.2):
    """(fit, validation) of the training side of :func:`split_speech`, again by speaker.

    The validation speakers are the next speakers in the same hash order, from
    :data:`VALIDATION_SOURCES` only; no speaker is on both sides.
    """
    val = heldout_speakers([c for c in train_clips if c.source in VALIDATION_SOURCES], fraction)
    return [c for c in train_clips if c.speaker not in val], [c for c in train_clips if c.speaker in val]


def split_photos(photos: list[DevicePhoto], fraction: float = 0.2):
    """(train, held_out) by a hash of each photo's file name."""
    held = [p for p in photos if _hash(p.path.name) % 1000 < fraction * 1000]
    keep = set(held)
    return [p for p in photos if p not in keep], held
