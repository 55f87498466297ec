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

from mbm.gallery import GALLERY_FILE, Gallery, gallery_dir, validate_name
from mbm.portrait_engine import Queries, fuse, gallery_tensors
from mbm.portrait_features import embed_profile, embed_voices, face_embedder, voice_waveform
from mbm.portrait_model import load_portrait_model
from mbm.preprocess import ImageConfig, InputError, read_image
from mbm.scenarios.portrait import COMPOSED_NOTE

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = ROOT / "checkpoints" / "portrait.pt"
SHIPPED_GALLERY = ROOT / "checkpoints" / "portrait_gallery.json"
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


class PortraitPredictor:
    def __init__(self, model, gallery: Gallery, gallery_path: Path | None):
        self.model = model
        self.faces = face_embedder()
        self.gallery = gallery
        self.gallery_path = gallery_path  # None: in memory only
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path = DEFAULT_CHECKPOINT, gallery_folder: str | Path | None = "env",
                        shipped_gallery: str | Path = SHIPPED_GALLERY) -> "PortraitPredictor":
        """Load the model and the gallery.

        Args:
            gallery_folder: the persistent folder ("env": ``$MBM_GALLERY_DIR`` or its default; None: the
                shipped gallery in memory, nothing written).
        """
        model, _ = load_portrait_model(checkpoint)
        folder = gallery_dir() if gallery_folder == "env" else (Path(gallery_folder) if gallery_folder else None)
        if folder is not None and (folder / GALLERY_FILE).is_file():
            gallery = Gallery.load(folder)
        else:
            gallery = Gallery.load(shipped_gallery) if Path(shipped_gallery).is_file() else Gallery()
        return cls(model, gallery, folder)

    # --- recognition ---------------------------------------------------------------------------

    def predict(self, face=None, voice=None, text: str | None = None) -> PortraitResult:
        """Identify from any subset of face photo, voice clip and profile text.

        Raises:
            InputError: no input at all, no face found / unreadable photo, silent or empty audio,
                text without words, an empty gallery.
        """
        notes: list[str] = []
        if face is None and voice is None and not (text or "").strip():
            raise InputError("give a face photo, a voice clip or a profile text")
        if not len(self.gallery):
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
        with self._lock:
            g = gallery_tensors(self.gallery)
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

    def enrol(self, name: str, photos, voice=None, profile: str | None = None) -> dict:
        """Add a person from 1-5 photos (each must show a face), an optional voice clip and profile.

        Raises:
            ValueError / InputError: unsafe or empty name, name already enrolled, no photos, too many,
                a photo without a face.
        """
        name = validate_name(name)
        if name in self.gallery:
            raise ValueError(f"'{name}' is already enrolled; remove them first or choose another name")
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
        with self._lock:
            g = self.gallery.copy()
            g.add(name, emb, v, profile, meta={"enrolled_from_n": len(chips)})
            self._persist(g)
            self.gallery = g
        return {"name": name, "photos": len(chips), "voice": v is not None, "profile": bool((profile or "").strip())}

    def remove(self, name: str) -> None:
        with self._lock:
            g = self.gallery.copy()
            g.remove(name)
            self._persist(g)
            self.gallery = g

    def list_people(self) -> list[dict]:
        with self._lock:
            return [{"name": p.name, "photos": p.n_photos, "voice": p.voice is not None,
                     "profile": p.profile or "", "composed": bool(p.meta.get("composed"))}
                    for p in self.gallery.people.values()]

    def _persist(self, g: Gallery) -> None:
        if self.gallery_path is not None:
            g.save(self.gallery_path)

    note = COMPOSED_NOTE
