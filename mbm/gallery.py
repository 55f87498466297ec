"""The enrolled people: per-person prototypes for face, voice and profile.

Enrolment adds prototypes (no retraining). The gallery is one JSON file inside a
folder — ``$MBM_GALLERY_DIR`` (default ``~/.cache/mbm/portrait_gallery``) — written
atomically (temp file in the same folder, fsync, ``os.replace``), so a crash in the
middle of a write leaves the previous gallery intact. Names are validated and never
become file paths: every person lives inside the one file.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mbm.storage import atomic_write

FORMAT = "mbm-portrait-gallery/1"
GALLERY_FILE = "gallery.json"
ENV_VAR = "MBM_GALLERY_DIR"
DEFAULT_DIR = "~/.cache/mbm/portrait_gallery"
MAX_NAME = 64
_NAME = re.compile(r"^[\w][\w .,'()-]*$")


def gallery_dir() -> Path:
    """The persistent gallery folder: ``$MBM_GALLERY_DIR`` or ``~/.cache/mbm/portrait_gallery``."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR).expanduser()


def validate_name(name) -> str:
    """A display name that is safe to store and show, or ValueError saying what is wrong."""
    if not isinstance(name, str):
        raise ValueError("the name must be text")
    name = unicodedata.normalize("NFKC", name).strip()
    name = re.sub(r"\s+", " ", name)
    if not name:
        raise ValueError("the name is empty; type the person's name")
    if len(name) > MAX_NAME:
        raise ValueError(f"the name is longer than {MAX_NAME} characters")
    if name in (".", "..") or not _NAME.match(name) or any(unicodedata.category(c)[0] == "C" for c in name):
        raise ValueError("the name may hold only letters, digits, spaces and . , ' ( ) - _ "
                         "(no slashes or other path characters), and must start with a letter or digit")
    if name.lower() == "unknown":
        raise ValueError("'unknown' is reserved for people not in the gallery")
    return name


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-8)


@dataclass
class Person:
    name: str
    face: np.ndarray  # (128,) unit prototype: mean of the enrolled photos' descriptors, re-normalised
    n_photos: int
    voice: np.ndarray | None = None  # (256,) unit prototype, or None
    profile: str | None = None
    meta: dict = field(default_factory=dict)  # e.g. {"voice_from": "fsdd:george", "composed": True}

    def to_json(self) -> dict:
        return {"name": self.name, "face": [round(float(x), 6) for x in self.face], "n_photos": self.n_photos,
                "voice": None if self.voice is None else [round(float(x), 6) for x in self.voice],
                "profile": self.profile, "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict) -> "Person":
        face = _unit(d["face"])
        voice = None if d.get("voice") is None else _unit(d["voice"])
        if face.shape != (128,) or (voice is not None and voice.shape != (256,)):
            raise ValueError(f"bad prototype shapes for {d.get('name')!r}")
        return cls(validate_name(d["name"]), face, int(d.get("n_photos", 1)), voice, d.get("profile"),
                   dict(d.get("meta") or {}))


class Gallery:
    """name -> Person, with atomic persistence."""

    def __init__(self, people: list[Person] | None = None):
        self.people: dict[str, Person] = {}
        for p in people or []:
            self.people[p.name] = p

    def __len__(self) -> int:
        return len(self.people)

    def __contains__(self, name) -> bool:
        return name in self.people

    def names(self) -> list[str]:
        return list(self.people)

    def copy(self) -> "Gallery":
        return Gallery(list(self.people.values()))

    def add(self, name: str, face_embeddings: np.ndarray, voice: np.ndarray | None = None,
            profile: str | None = None, meta: dict | None = None, replace: bool = False) -> Person:
        name = validate_name(name)
        if name in self.people and not replace:
            raise ValueError(f"'{name}' is already enrolled; remove them first or choose another name")
        faces = np.asarray(face_embeddings, np.float32).reshape(-1, 128)
        if len(faces) == 0:
            raise ValueError("enrolment needs at least one photo with a face")
        person = Person(name, _unit(faces.mean(0)), len(faces), None if voice is None else _unit(voice),
                        (profile or "").strip() or None, dict(meta or {}))
        self.people[name] = person
        return person

    def remove(self, name: str) -> None:
        if not isinstance(name, str) or name.strip() not in self.people:
            raise ValueError(f"nobody called {name!r} is enrolled")
        del self.people[name.strip()]

    def matrices(self) -> dict[str, np.ndarray]:
        """Stacked prototypes: face (N,128); voice (N,256) + has_voice (N,); profile texts."""
        people = list(self.people.values())
        n = len(people)
        return {"face": np.stack([p.face for p in people]) if n else np.zeros((0, 128), np.float32),
                "voice": np.stack([p.voice if p.voice is not None else np.zeros(256, np.float32) for p in people])
                if n else np.zeros((0, 256), np.float32),
                "has_voice": np.array([p.voice is not None for p in people], bool),
                "profile": [p.profile for p in people]}

    # --- persistence ---------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {"format": FORMAT, "people": [p.to_json() for p in self.people.values()]}

    @classmethod
    def from_json(cls, d: dict) -> "Gallery":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"not a portrait gallery (expected format {FORMAT})")
        return cls([Person.from_json(p) for p in d.get("people", [])])

    def save(self, path: str | Path) -> Path:
        """Write atomically to ``path`` (a folder -> ``folder/gallery.json``, or a .json file)."""
        path = Path(path)
        if path.suffix != ".json":
            path = path / GALLERY_FILE
        return atomic_write(path, lambda f: json.dump(self.to_json(), f), binary=False)

    @classmethod
    def load(cls, path: str | Path) -> "Gallery":
        path = Path(path)
        if path.suffix != ".json":
            path = path / GALLERY_FILE
        try:
            with open(path, encoding="utf-8") as f:
                return cls.from_json(json.load(f))
        except FileNotFoundError:
            raise ValueError(f"no gallery at {path}") from None
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"the gallery file {path} is damaged ({type(e).__name__})") from None
