"""A collection's folder: its photos, each with an optional same-name ``.txt`` caption and ``.wav``/``.mp3``
voice note (``lamp1.jpg``, ``lamp1.txt``, ``lamp1.wav``)."""

from __future__ import annotations

from pathlib import Path

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff")
VOICE_SUFFIXES = (".wav", ".mp3")
MAX_CAPTION_CHARS = 2000


def scan(folder: Path) -> tuple[list[Path], list[str]]:
    """Photos under folder (recursively, sorted) and the files that are neither photo nor companion."""
    photos, other = [], []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if p.suffix.lower() in PHOTO_SUFFIXES:
            photos.append(p)
        elif p.suffix.lower() not in (".txt", *VOICE_SUFFIXES, ".npz", ".json", ".md"):
            other.append(str(p.relative_to(folder)))
    return photos, other


def read_caption(p: Path) -> tuple[str, list[str]]:
    """A caption file's text, reading at most what the cap can use (a 2 GB .txt is not read whole)."""
    notes = []
    with open(p, "rb") as f:
        raw = f.read(MAX_CAPTION_CHARS * 4)
    text = raw.decode("utf-8", errors="replace").strip()
    if len(raw) == MAX_CAPTION_CHARS * 4:  # cut: a character split at the end is not "invalid UTF-8"
        text = text.rstrip("\ufffd")
    if len(text) > MAX_CAPTION_CHARS:
        text = text[:MAX_CAPTION_CHARS]
        notes.append(f"caption cut to {MAX_CAPTION_CHARS} characters")
    if "\ufffd" in text:
        notes.append("caption is not valid UTF-8; unreadable characters replaced")
    return text, notes


def photo_or_reason(path: Path):
    """The 224 px photo, or the reason it cannot be read (a string)."""
    from mbm.scenarios.retrieval.encoders import load_photo

    try:
        return load_photo(path)
    except Exception as e:  # noqa: BLE001 - the caller lists it
        return str(e)[:200] or type(e).__name__
