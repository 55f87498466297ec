"""``PortraitPredictor``: who is this (or "unknown"), enrol, remove, list — plain Python in and out.

    p = PortraitPredictor.from_checkpoint()            # checkpoints/portrait.pt + the gallery
    r = p.predict(face="photo.jpg", voice="clip.wav", text="tall, wears glasses")
    r.identity, r.top5, r.modality_weights, r.face_crop
    p.enrol("Ada", ["a1.jpg", "a2.jpg"], voice="ada.wav", profile="works in the lab")
    p.remove("Ada"); p.list_people()

The gallery persists in ``$MBM_GALLERY_DIR`` (default ``~/.cache/mbm/portrait_gallery``);
until the first enrol/remove the shipped gallery (``checkpoints/portrait_gallery.json``) is used.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mbm.features.face import face_embedder
from mbm.features.voice import embed_voices, voice_waveform
from mbm.limits import MAX_PROFILE_CHARS, MAX_SESSION_PEOPLE, MAX_SHARED_PEOPLE
from mbm.paths import PORTRAIT_CHECKPOINT as DEFAULT_CHECKPOINT
from mbm.paths import PORTRAIT_SHIPPED_GALLERY as SHIPPED_GALLERY
from mbm.preprocess import ImageConfig, InputError, read_image
from mbm.scenarios.portrait.access import NotAllowed, check_admin
from mbm.scenarios.portrait.engine import Queries, fuse, gallery_tensors
from mbm.scenarios.portrait.features import embed_profile
from mbm.scenarios.portrait.gallery import (
    GALLERY_FILE,
    Gallery,
    face_thumbnail,
    gallery_dir,
    thumbnail_uri,
    validate_name,
)
from mbm.scenarios.portrait.model import load_portrait_model
from mbm.scenarios.portrait.spec import COMPOSED_NOTE
from mbm.storage import remove_stale_temp_files

MAX_ENROL_PHOTOS = 5


@dataclass
class PortraitResult:
    identity: str  # a gallery name or "unknown"
    score: float  # fused score of the best match (threshold below)
    threshold: float
    top5: list[tuple[str, float]]  # (name, score), best first
    confidences: dict[str, float]  # name -> softmax over the gallery scores (for gr.Label)
    modality_weights: dict[str, float]  # face / voice / profile, sum to 1, absent = 0
    face_crop: np.ndarray | None  # (150, 150, 3) uint8 aligned face the model used
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"identity": self.identity, "score": self.score, "threshold": self.threshold,
                "top5": [{"name": n, "score": s} for n, s in self.top5],
                "modality_weights": self.modality_weights, "notes": self.notes}


def _rgb(source) -> np.ndarray:
    return np.asarray(read_image(source, ImageConfig(size=256)))


class StorageError(ValueError):
    """A gallery write failed (disk full, permissions); the in-memory gallery is unchanged."""


class PortraitPredictor:
    """Recognition over the shared gallery (shipped people + the owner's changes, persisted) plus, per call,
    an optional visitor's own session gallery (kept by the caller, e.g. in a ``gr.State``).

    Visitors enrol into and remove from their session gallery only; the shared gallery changes only with
    the admin token (``$MBM_ADMIN_TOKEN``). Called without a session and without a token (a script on
    the owner's machine), enrol and remove change the shared gallery as before.
    """

    def __init__(self, model, gallery: Gallery, gallery_path: Path | None, shipped: Gallery | None = None):
        self.model = model
        self.faces = face_embedder()
        self.gallery = gallery
        self.gallery_path = gallery_path  # None: in memory only
        self.shipped = shipped if shipped is not None else gallery.copy()  # for reset_shared
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path = DEFAULT_CHECKPOINT, gallery_folder: str | Path | None = "env",
                        shipped_gallery: str | Path = SHIPPED_GALLERY) -> PortraitPredictor:
        """Load the model and the gallery.

        Args:
            gallery_folder: the persistent folder ("env": ``$MBM_GALLERY_DIR`` or its default; None: the
                shipped gallery in memory, nothing written).
        """
        model, _ = load_portrait_model(checkpoint)
        folder = gallery_dir() if gallery_folder == "env" else (Path(gallery_folder) if gallery_folder else None)
        shipped = Gallery.load(shipped_gallery) if Path(shipped_gallery).is_file() else Gallery()
        if folder is not None:
            remove_stale_temp_files(folder)  # left by a writer killed mid-save
        if folder is not None and (folder / GALLERY_FILE).is_file():
            gallery = Gallery.load(folder)
        else:
            gallery = shipped.copy()
        return cls(model, gallery, folder, shipped)

    # --- recognition ---------------------------------------------------------------------------

    def predict(self, face=None, voice=None, text: str | None = None, session: Gallery | None = None) -> PortraitResult:
        """Identify from any subset of face photo, voice clip and profile text.

        ``session``: a visitor's own enrolments, searched together with the shared gallery.

        Raises:
            InputError: no input at all, no face found / unreadable photo, silent or empty audio,
                text without words, an empty gallery.
        """
        notes: list[str] = []
        if face is None and voice is None and not (text or "").strip():
            raise InputError("give a face photo, a voice clip or a profile text")
        if not len(self.gallery) and not (session is not None and len(session)):
            raise InputError("the gallery is empty; enrol someone first")
        q = Queries()
        crop = None
        if face is not None:
            feat = self.faces(_rgb(face), require_face=True)
            q.face = torch.from_numpy(feat.embedding)[None]
            q.face_quality = torch.tensor([feat.sharpness / 10])
            crop = feat.crop
            notes += feat.notes
        if voice is not None:
            q.voice = torch.from_numpy(embed_voices([voice_waveform(voice)]))
        if text is not None and text.strip():
            e = embed_profile(text)
            if e is None:
                raise InputError("the profile text holds no descriptive words; e.g. 'tall, wears glasses'")
            q.profile = torch.from_numpy(e)[None]
        g = gallery_tensors(self._searched(session))  # cached per gallery version: no work per request
        with torch.no_grad():
            out = fuse(self.model, q, g)
        scores = out.scores[0]
        order = scores.argsort(descending=True).tolist()
        thr = float(self.model.threshold)
        best = float(scores[order[0]])
        probs = torch.softmax(2.0 * scores, 0)
        w = out.modality_weights[0].tolist()  # audio, image, text
        return PortraitResult(identity=g.names[order[0]] if best >= thr else "unknown", score=best, threshold=thr,
                              top5=[(g.names[i], round(float(scores[i]), 4)) for i in order[:5]],
                              confidences={g.names[i]: float(probs[i]) for i in order[:5]},
                              modality_weights={"face": w[1], "voice": w[0], "profile": w[2]},
                              face_crop=crop, notes=notes)

    # --- gallery -------------------------------------------------------------------------------

    def _searched(self, session: Gallery | None) -> Gallery:
        """The shared gallery, plus the session's people when there are any (shared names come first)."""
        shared = self.gallery  # replaced, never mutated: no lock needed to read it
        if session is None or not len(session):
            return shared
        return Gallery(list(shared.people.values()) + [p for p in session.people.values() if p.name not in shared])

    def enrol(self, name: str, photos, voice=None, profile: str | None = None, session: Gallery | None = None,
              admin_token: str | None = None) -> dict:
        """Add a person from 1-5 photos (each must show a face), an optional voice clip and profile.

        Into ``session`` (a visitor's own gallery, changed in place) when given without a token; into the
        shared, persisted gallery with the admin token, or when called with neither (the owner's script).

        Raises:
            ValueError / InputError: unsafe or empty name, name already enrolled (here or in the shared
                gallery, up to case and lookalike letters), no photos, too many, a photo without a face, a
                profile over the length cap, a full gallery, a wrong admin token, a failed save.
        """
        shared = admin_token is not None or session is None
        if admin_token is not None:
            check_admin(admin_token)
        name = validate_name(name)
        taken = self.gallery.find(name) or (session.find(name) if session is not None else None)
        if taken is not None:
            raise ValueError(f"'{taken}' is already enrolled"
                             + (f" (the same name as '{name}' up to case or lookalike letters)" if taken != name
                                else "") + "; remove them first or choose another name")
        if profile is not None and not isinstance(profile, str):
            raise InputError(f"the profile must be text, not {type(profile).__name__}")
        if profile is not None and len(profile.strip()) > MAX_PROFILE_CHARS:
            raise InputError(f"the profile is {len(profile.strip())} characters long; the limit is "
                             f"{MAX_PROFILE_CHARS}")
        if shared and len(self.gallery) >= MAX_SHARED_PEOPLE:
            raise InputError(f"the shared gallery is full ({MAX_SHARED_PEOPLE} people); remove someone first")
        if not shared and len(session) >= MAX_SESSION_PEOPLE:
            raise InputError(f"you have enrolled {MAX_SESSION_PEOPLE} people in this session, the limit; "
                             "remove one of yours first")
        if photos is None or isinstance(photos, (str, Path, bytes)) or not hasattr(photos, "__len__"):
            photos = [] if photos is None else [photos]
        photos = [p for p in photos if p is not None]
        if not photos:
            raise InputError("enrolment needs 1 to 5 photos of the person's face")
        if len(photos) > MAX_ENROL_PHOTOS:
            raise InputError(f"give at most {MAX_ENROL_PHOTOS} photos")
        fe = self.faces
        chips = []
        for k, photo in enumerate(photos, 1):
            try:
                chip, _, n_faces = fe.chip(_rgb(photo), require_face=True)
            except InputError as e:
                raise InputError(f"photo {k}: {e}") from None
            if n_faces > 1:
                raise InputError(f"photo {k} shows {n_faces} faces; enrol from photos of this one person alone")
            chips.append(chip)
        emb = fe.embed_chips(chips)
        v = embed_voices([voice_waveform(voice)])[0] if voice is not None else None
        meta = {"enrolled_from_n": len(chips)}
        thumbnail = face_thumbnail(chips[0])  # what the People list shows (64 px, a few KB)
        if shared:
            with self._lock:
                g = self.gallery.copy()
                g.add(name, emb, v, profile, meta=meta, thumbnail=thumbnail)
                self._persist(g)  # raises (a message) before anything changes in memory
                self.gallery = g
        else:
            session.add(name, emb, v, profile, meta={**meta, "session": True}, thumbnail=thumbnail)
        return {"name": name, "photos": len(chips), "voice": v is not None, "profile": bool((profile or "").strip()),
                "where": "shared" if shared else "session"}

    def remove(self, name: str, session: Gallery | None = None, admin_token: str | None = None) -> str:
        """Remove a person (same name rules as enrol); returns the stored name.

        A visitor's own people (in ``session``) need no token; shared and shipped people need the admin
        token (or a call with neither session nor token: the owner's script).
        """
        name = validate_name(name)
        if session is not None and admin_token is None and session.find(name) is not None:
            return session.remove(name)
        if self.gallery.find(name) is None:
            raise ValueError(f"nobody called {name!r} is enrolled")
        if session is not None or admin_token is not None:
            if admin_token is None:
                raise NotAllowed(f"'{self.gallery.find(name)}' is in the shared gallery: only the owner can "
                                 "remove them (with the admin token); you can remove the people you enrolled")
            check_admin(admin_token)
        with self._lock:
            g = self.gallery.copy()
            removed = g.remove(name)
            self._persist(g)
            self.gallery = g
        return removed

    def reset_shared(self, admin_token: str | None) -> int:
        """The owner's "reset to the shipped gallery" (admin token required); returns the people count."""
        check_admin(admin_token)
        with self._lock:
            g = self.shipped.copy()
            self._persist(g)
            self.gallery = g
        return len(g)

    def list_people(self, session: Gallery | None = None) -> list[dict]:
        """Everyone searched: ``[{"name", "photos", "voice", "profile", "composed", "origin", "thumbnail"}]``;
        ``thumbnail`` is the enrolment face as a ``data:image/jpeg`` URI, None for the shipped people."""
        shipped = self.shipped

        def row(p, origin: str, composed: bool) -> dict:
            return {"name": p.name, "photos": p.n_photos, "voice": p.voice is not None, "profile": p.profile or "",
                    "composed": composed, "origin": origin, "thumbnail": thumbnail_uri(p.thumbnail)}

        rows = [row(p, "shipped" if p.name in shipped.people else "shared", bool(p.meta.get("composed")))
                for p in self.gallery.people.values()]
        if session is not None:
            rows += [row(p, "yours (this session)", False)
                     for p in session.people.values() if p.name not in self.gallery.people]
        return rows

    def _persist(self, g: Gallery) -> None:
        if self.gallery_path is not None:
            try:
                g.save(self.gallery_path)
            except OSError as e:  # disk full, read-only, permissions: a message, the old gallery kept
                raise StorageError(f"the gallery could not be saved ({e.strerror or type(e).__name__}); "
                                   "nothing was changed") from None

    note = COMPOSED_NOTE
