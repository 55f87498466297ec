"""The enrolled people: per-person prototypes for face, voice and profile.

Enrolment adds prototypes (no retraining). The gallery is one JSON file inside a
folder — ``$MBM_GALLERY_DIR`` (default ``~/.cache/mbm/portrait_gallery``) — written
atomically (temp file in the same folder, fsync, ``os.replace``), so a crash in the
middle of a write leaves the previous gallery intact. Names are validated and never
become file paths: every person lives inside the one file.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mbm.limits import MAX_PROFILE_CHARS
from mbm.storage import atomic_write

FORMAT = "mbm-portrait-gallery/1"
GALLERY_FILE = "gallery.json"
ENV_VAR = "MBM_GALLERY_DIR"
DEFAULT_DIR = "~/.cache/mbm/portrait_gallery"
MAX_NAME = 64
THUMBNAIL_PX = 64  # the face a person is listed with: a 64 px JPEG (2-4 KB), kept in the gallery file
MAX_THUMBNAIL_BYTES = 12_000  # a stored thumbnail larger than this is not one of ours: refused
_NAME = re.compile(r"^[\w][\w .,'()-]*$")


def gallery_dir() -> Path:
    """The persistent gallery folder: ``$MBM_GALLERY_DIR`` or ``~/.cache/mbm/portrait_gallery``."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR).expanduser()


# Letters that look like Latin ones in other scripts (the common homoglyphs): a name made of them is
# compared with the Latin name it imitates, so "Аda" (Cyrillic А) cannot sit beside "Ada".
_LOOKALIKE = str.maketrans("АВЕЅІЈКМНОРСТХУаеорсухіјѕԁӏԛԝΑΒΕΖΗΙΚΜΝΟΡΤΥΧαοικνρυ",
                           "ABESIJKMHOPCTXYaeopcyxijsdlqwABEZHIKMNOPTYXaoikvpu")


def _script(c: str) -> str:
    """The script of a letter, from its Unicode name ("LATIN", "CYRILLIC", "GREEK", "CJK"...)."""
    try:
        return unicodedata.name(c).split()[0]
    except ValueError:
        return "UNKNOWN"


def validate_name(name, strict: bool = True) -> str:
    """A display name that is safe to store and show, or ValueError saying what is wrong.

    The same rules for enrol, remove and lookup: Unicode NFKC, whitespace collapsed, at most
    ``MAX_NAME`` characters. ``strict`` (enrol, remove, lookup; not when loading a saved gallery)
    also refuses letters of several scripts in one name (``Аda`` with a Cyrillic А). The message
    never echoes a long input back.
    """
    if not isinstance(name, str):
        raise ValueError(f"the name must be text, not {type(name).__name__}")
    if len(name) > 4 * MAX_NAME:  # do not even normalise a huge input
        raise ValueError(f"the name is longer than {MAX_NAME} characters")
    name = unicodedata.normalize("NFKC", name).strip()
    name = re.sub(r"\s+", " ", name)
    if not name:
        raise ValueError("the name is empty; type the person's name")
    if len(name) > MAX_NAME:
        raise ValueError(f"the name is longer than {MAX_NAME} characters")
    if name in (".", "..") or not _NAME.match(name) or any(unicodedata.category(c)[0] == "C" for c in name):
        raise ValueError("the name may hold only letters, digits, spaces and . , ' ( ) - _ "
                         "(no slashes or other path characters), and must start with a letter or digit")
    if name.casefold() == "unknown":
        raise ValueError("'unknown' is reserved for people not in the gallery")
    if strict:
        scripts = {_script(c) for c in name if c.isalpha()}
        if len(scripts) > 1:
            raise ValueError("the name mixes letters of several alphabets (" + ", ".join(sorted(scripts)).lower()
                             + "); lookalike names are refused: write it in one alphabet")
    return name


def name_key(name: str) -> str:
    """The comparison key of a valid name: case-folded, lookalike letters mapped to Latin ("S1" = "s1")."""
    return name.translate(_LOOKALIKE).casefold()


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-8)


def face_thumbnail(chip: np.ndarray) -> bytes:
    """A person's list thumbnail from an aligned face chip ((H, W, 3) uint8): a THUMBNAIL_PX JPEG."""
    from PIL import Image, ImageOps

    img = ImageOps.fit(Image.fromarray(np.ascontiguousarray(chip, dtype=np.uint8)).convert("RGB"),
                       (THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=85)
    return check_thumbnail(buffer.getvalue())


def check_thumbnail(data) -> bytes:
    """``data`` if it is a thumbnail as ``face_thumbnail`` makes them, else ValueError saying why.

    Bounded before anything is decoded: at most MAX_THUMBNAIL_BYTES, a JPEG, at most THUMBNAIL_PX a side.
    """
    from PIL import Image

    if not isinstance(data, bytes):
        raise ValueError(f"a thumbnail must be JPEG bytes, not {type(data).__name__}")
    if len(data) > MAX_THUMBNAIL_BYTES:
        raise ValueError(f"the thumbnail is {len(data)} bytes; the limit is {MAX_THUMBNAIL_BYTES}")
    if not data.startswith(b"\xff\xd8\xff"):
        raise ValueError("the thumbnail is not a JPEG")
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            size, kind = img.size, img.format
    except OSError:
        raise ValueError("the thumbnail is not a readable JPEG") from None
    if kind != "JPEG" or max(size) > THUMBNAIL_PX:
        raise ValueError(f"the thumbnail is a {size[0]}x{size[1]} {kind}; expected a JPEG of at most "
                         f"{THUMBNAIL_PX} px a side")
    return data


def thumbnail_uri(data: bytes | None) -> str | None:
    """A stored thumbnail as a ``data:image/jpeg`` URI for an <img> (None stays None)."""
    return None if data is None else "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


@dataclass
class Person:
    name: str
    face: np.ndarray  # (128,) unit prototype: mean of the enrolled photos' descriptors, re-normalised
    n_photos: int
    voice: np.ndarray | None = None  # (256,) unit prototype, or None
    profile: str | None = None
    meta: dict = field(default_factory=dict)  # e.g. {"voice_from": "fsdd:george", "composed": True}
    thumbnail: bytes | None = None  # the enrolment face as a small JPEG (check_thumbnail), or None

    def to_json(self) -> dict:
        return {"name": self.name, "face": [round(float(x), 6) for x in self.face], "n_photos": self.n_photos,
                "voice": None if self.voice is None else [round(float(x), 6) for x in self.voice],
                "profile": self.profile, "meta": self.meta,
                "thumbnail": None if self.thumbnail is None else base64.b64encode(self.thumbnail).decode("ascii")}

    @classmethod
    def from_json(cls, d: dict) -> Person:
        face = _unit(d["face"])
        voice = None if d.get("voice") is None else _unit(d["voice"])
        if face.shape != (128,) or (voice is not None and voice.shape != (256,)):
            raise ValueError(f"bad prototype shapes for {d.get('name')!r}")
        profile = d.get("profile")
        if isinstance(profile, str) and len(profile) > MAX_PROFILE_CHARS:  # a gallery saved before the cap
            profile = profile[:MAX_PROFILE_CHARS]
        return cls(validate_name(d["name"], strict=False), face, int(d.get("n_photos", 1)), voice,
                   profile if isinstance(profile, str) else None, dict(d.get("meta") or {}),
                   _stored_thumbnail(d.get("thumbnail")))

    def profile_embedding(self) -> np.ndarray | None:
        """The profile's text embedding, computed once (at enrol or load) and kept, never per request."""
        if "_profile_vec" not in self.__dict__:
            from mbm.scenarios.portrait.features import embed_profile

            self.__dict__["_profile_vec"] = embed_profile(self.profile)
        return self.__dict__["_profile_vec"]


def _stored_thumbnail(text) -> bytes | None:
    """A saved thumbnail (base64 text) back as bytes; a damaged or oversized one is dropped, not fatal."""
    if not isinstance(text, str) or len(text) > MAX_THUMBNAIL_BYTES * 4 // 3 + 4:  # checked before decoding
        return None
    try:
        return check_thumbnail(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error):
        return None


class Gallery:
    """name -> Person, with atomic persistence."""

    def __init__(self, people: list[Person] | None = None):
        self.people: dict[str, Person] = {}
        self._keys: dict[str, str] = {}  # name_key -> name
        self.version = 0  # bumped on every change (cached tensors follow it)
        for p in people or []:
            self.people[p.name] = p
            self._keys[name_key(p.name)] = p.name

    def __len__(self) -> int:
        return len(self.people)

    def __contains__(self, name) -> bool:
        return self.find(name) is not None

    def find(self, name) -> str | None:
        """The enrolled name that ``name`` denotes under the name rules (NFKC, case, lookalikes), or None."""
        try:
            name = validate_name(name, strict=False)
        except ValueError:
            return None
        return self._keys.get(name_key(name))

    def names(self) -> list[str]:
        return list(self.people)

    def copy(self) -> Gallery:
        return Gallery(list(self.people.values()))

    def add(self, name: str, face_embeddings: np.ndarray, voice: np.ndarray | None = None,
            profile: str | None = None, meta: dict | None = None, replace: bool = False,
            thumbnail: bytes | None = None) -> Person:
        """Enrol ``name`` from face descriptors (N, 128), an optional voice prototype, profile and list
        thumbnail (``face_thumbnail``); ValueError for a taken or unsafe name, a long profile, a bad thumbnail."""
        name = validate_name(name)
        existing = self.find(name)
        if existing is not None and not replace:
            raise ValueError(f"'{existing}' is already enrolled"
                             + (f" (the same name as '{name}' up to case or lookalike letters)" if existing != name
                                else "") + "; remove them first or choose another name")
        profile = (profile or "").strip() or None
        if profile is not None and len(profile) > MAX_PROFILE_CHARS:
            raise ValueError(f"the profile is {len(profile)} characters long; the limit is {MAX_PROFILE_CHARS}")
        faces = np.asarray(face_embeddings, np.float32).reshape(-1, 128)
        if len(faces) == 0:
            raise ValueError("enrolment needs at least one photo with a face")
        if thumbnail is not None:
            thumbnail = check_thumbnail(thumbnail)
        person = Person(name, _unit(faces.mean(0)), len(faces), None if voice is None else _unit(voice),
                        profile, dict(meta or {}), thumbnail)
        person.profile_embedding()  # once, here: never per request
        if existing is not None:
            del self.people[existing]
        self.people[name] = person
        self._keys[name_key(name)] = name
        self.version += 1
        return person

    def remove(self, name: str) -> str:
        """Remove the person ``name`` denotes (same name rules as enrol); returns the stored name."""
        found = self.find(name)
        if found is None:
            shown = name if isinstance(name, str) and len(name) <= MAX_NAME else "that name"
            raise ValueError(f"nobody called {shown!r} is enrolled" if shown != "that name"
                             else "nobody by that name is enrolled")
        del self.people[found]
        del self._keys[name_key(found)]
        self.version += 1
        return found

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
    def from_json(cls, d: dict) -> Gallery:
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
    def load(cls, path: str | Path) -> Gallery:
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
