"""Readers for the face photos of a folder laid out like ``../shared/data``.

``DIR/faces/orl/s<N>/<k>.pgm`` (identity = the folder name, e.g. ``s7``) and
``DIR/faces/yale/subject<NN>.<condition>.<ext>`` (identity = ``subjectNN``).
Photos are listed sorted by identity, then by file name, so "the first K photos
of a person" means the same thing on every machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FACE_SUFFIXES = (".pgm", ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", "")
_YALE = re.compile(r"^(subject\d+)\.")
_ORL = re.compile(r"^s\d+$")


@dataclass(frozen=True)
class FacePhoto:
    path: Path
    identity: str  # "s7" (ORL) or "subject03" (Yale)
    source: str  # "orl" or "yale"


def list_face_photos(data_dir: str | Path) -> list[FacePhoto]:
    """Every face photo under ``data_dir/faces``, sorted by (source, identity, file name)."""
    root = Path(data_dir) / "faces"
    photos: list[FacePhoto] = []
    orl = root / "orl"
    if orl.is_dir():
        for person in sorted(p for p in orl.iterdir() if p.is_dir() and _ORL.match(p.name)):
            for path in sorted(person.iterdir(), key=lambda p: p.name):
                if path.is_file() and path.suffix.lower() in FACE_SUFFIXES and not path.name.startswith("."):
                    photos.append(FacePhoto(path, person.name, "orl"))
    yale = root / "yale"
    if yale.is_dir():
        for path in sorted(yale.iterdir(), key=lambda p: p.name):
            m = _YALE.match(path.name)
            if m and path.is_file():
                photos.append(FacePhoto(path, m.group(1), "yale"))
    return photos


def by_identity(photos: list[FacePhoto]) -> dict[str, list[FacePhoto]]:
    """identity -> its photos sorted by file name (insertion order = sorted identities)."""
    out: dict[str, list[FacePhoto]] = {}
    for p in photos:
        out.setdefault(p.identity, []).append(p)
    for group in out.values():
        group.sort(key=lambda p: p.path.name)
    return out
