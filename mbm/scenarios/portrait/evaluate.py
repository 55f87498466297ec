"""Evaluation of the portrait scenario: ``evaluate_portrait(...) -> dict``.

Metrics:
- face_accuracy_known: face only, over photos of people in the gallery (photos the
  gallery was enrolled from are skipped), correct = right name and not "unknown";
- unknown_rejection: fraction of photos of people absent from the gallery that come out "unknown";
- enrolled_accuracy (enroll=K): every person absent from the gallery is enrolled from
  their first K photos (sorted by file name); then their remaining photos are
  identified among the whole gallery (known + all newly enrolled people);
- fused_accuracy_known: face + voice + profile over the known people: the photo, a clip
  of the speaker whose voice the person was composed with (a clip not used for the
  voice prototype, when DIR has one; else no voice) and a typed hint of two phrases
  of the person's profile.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from mbm.data.faces import FacePhoto, by_identity, list_face_photos
from mbm.features.face import face_embedder, sharpness
from mbm.features.voice import embed_voices, voice_waveform
from mbm.preprocess import InputError
from mbm.scenarios.portrait.engine import Queries, fuse, gallery_tensors
from mbm.scenarios.portrait.features import embed_profile
from mbm.scenarios.portrait.gallery import Gallery
from mbm.scenarios.portrait.model import PortraitModel
from mbm.scenarios.portrait.spec import enrol_and_query_clips, list_voice_clips, profile_hint


def load_rgb(path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def face_features(photos: list[FacePhoto]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 128) descriptors and (N,) quality (sharpness / 10) for photos, in order."""
    fe = face_embedder()
    chips, quality = [], []
    for photo in photos:
        chip, _, _ = fe.chip(load_rgb(str(photo.path)))
        chips.append(chip)
        quality.append(sharpness(chip) / 10)
    emb = np.concatenate([fe.embed_chips(chips[i:i + 32]) for i in range(0, len(chips), 32)]) if chips \
        else np.zeros((0, 128), np.float32)
    return emb, np.asarray(quality, np.float32)


def _readable(path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:  # noqa: BLE001 - damaged or not an image: skipped and counted
        return False


def identify(model: PortraitModel, gallery: Gallery, q: Queries) -> tuple[list[str], np.ndarray, np.ndarray]:
    """-> (predicted name or "unknown", best score, modality weights) per query."""
    g = gallery_tensors(gallery)
    with torch.no_grad():
        out = fuse(model, q, g)
    best, idx = out.scores.max(1)
    thr = float(model.threshold)
    names = [g.names[i] if s >= thr else "unknown" for s, i in zip(best.tolist(), idx.tolist())]
    return names, best.numpy(), out.modality_weights.numpy()


def evaluate_portrait(model: PortraitModel, gallery: Gallery, data_dir: str | Path, enroll: int | None = None,
                      fused: bool = True) -> dict:
    """Run the metrics above on a folder laid out like ``../shared/data``. Returns plain JSON-able values."""
    t0 = time.time()
    data_dir = Path(data_dir)
    listed = list_face_photos(data_dir)
    photos = [p for p in listed if _readable(p.path)]
    people = by_identity(photos)
    known = {n: ps for n, ps in people.items() if n in gallery}
    unknown = {n: ps for n, ps in people.items() if n not in gallery}
    known_q = [p for n, ps in known.items() for p in ps
               if p.path.name not in set(gallery.people[n].meta.get("enrolled_from", []))]
    unknown_q = [p for ps in unknown.values() for p in ps]
    faces = _FaceQueries(known_q + unknown_q)
    res: dict = {"n_known": len(known_q), "n_unknown": len(unknown_q), "n_unreadable": len(listed) - len(photos),
                 "n_known_people": len(known), "n_unknown_people": len(unknown), "gallery_size": len(gallery)}
    if known_q:
        pred, _, _ = identify(model, gallery, faces(known_q))
        res["face_accuracy_known"] = float(np.mean([a == p.identity for a, p in zip(pred, known_q)]))
    else:
        res["face_accuracy_known"] = None
    if unknown_q:
        pred, _, _ = identify(model, gallery, faces(unknown_q))
        res["unknown_rejection"] = float(np.mean([a == "unknown" for a in pred]))
    else:
        res["unknown_rejection"] = None
    if enroll:
        _enrolled_accuracy(res, model, gallery, unknown, faces, enroll)
    if fused and known_q:
        _fused_accuracy(res, model, gallery, data_dir, known, known_q, faces)
    else:
        res["fused_accuracy_known"] = None
    res["seconds"] = round(time.time() - t0, 1)
    return res


class _FaceQueries:
    """The face embeddings of every query photo, computed once; called with some of the photos, their Queries."""

    def __init__(self, photos: list[FacePhoto]):
        self.emb, self.qual = face_features(photos)
        self.index = {p.path: i for i, p in enumerate(photos)}

    def __call__(self, ps: list[FacePhoto]) -> Queries:
        ix = [self.index[p.path] for p in ps]
        return Queries(face=torch.from_numpy(self.emb[ix]), face_quality=torch.from_numpy(self.qual[ix]))


def _enrolled_accuracy(res: dict, model: PortraitModel, gallery: Gallery, unknown: dict, faces: _FaceQueries,
                       enroll: int) -> None:
    """enrolled_accuracy: each unknown person enrolled from ``enroll`` photos (without retraining), then
    recognised in the rest of theirs."""
    g2 = gallery.copy()
    rest = []
    for n, ps in unknown.items():
        if len(ps) <= enroll:
            continue
        ix = [faces.index[p.path] for p in ps[:enroll]]
        g2.add(n, faces.emb[ix], meta={"enrolled_from": [p.path.name for p in ps[:enroll]]})
        rest += ps[enroll:]
    if rest:
        pred, _, _ = identify(model, g2, faces(rest))
        res["enrolled_accuracy"] = float(np.mean([a == p.identity for a, p in zip(pred, rest)]))
    else:
        res["enrolled_accuracy"] = None
    res["n_enrolled_queries"] = len(rest)


def _fused_accuracy(res: dict, model: PortraitModel, gallery: Gallery, data_dir: Path, known: dict,
                    known_q: list[FacePhoto], faces: _FaceQueries) -> None:
    """fused_accuracy_known: each known photo with a query clip of its speaker and its person's profile, the
    mean modality weights, and the faithfulness metrics (weight_effect_spearman, noised_weight_drop)."""
    voice, has_v = _voice_queries(data_dir, gallery, known, known_q)
    prof = torch.zeros(len(known_q), 256)
    has_t = torch.zeros(len(known_q), dtype=torch.bool)
    for i, p in enumerate(known_q):
        text = gallery.people[p.identity].profile
        e = embed_profile(profile_hint(text, p.path.name)) if text else None
        if e is not None:
            prof[i] = torch.from_numpy(e)
            has_t[i] = True
    q = faces(known_q)
    q = Queries(face=q.face, face_quality=q.face_quality, voice=voice, profile=prof,
                present={"image": torch.ones(len(known_q), dtype=torch.bool), "audio": has_v, "text": has_t})
    pred, _, w = identify(model, gallery, q)
    res["fused_accuracy_known"] = float(np.mean([a == p.identity for a, p in zip(pred, known_q)]))
    res["fused_with_voice_share"] = float(has_v.float().mean())
    res["mean_modality_weights"] = {"voice": float(w[:, 0].mean()), "face": float(w[:, 1].mean()),
                                    "profile": float(w[:, 2].mean())}
    from mbm.scenarios.portrait.faithfulness import faithfulness_portrait

    res.update(faithfulness_portrait(model, gallery, q, [p.identity for p in known_q]))


def _voice_queries(data_dir: Path, gallery: Gallery, known: dict,
                   known_q: list[FacePhoto]) -> tuple[torch.Tensor, torch.Tensor]:
    """One voice clip per known photo (cycling through its speaker's query clips, never one the gallery was
    enrolled from): (N, 256) voice embeddings and whether each photo has one."""
    speakers = list_voice_clips(data_dir)
    voice_of = {}
    for n in known:
        spk = gallery.people[n].meta.get("voice_from")
        if spk in speakers:
            used = set(gallery.people[n].meta.get("voice_clips", []))
            _, cand = enrol_and_query_clips(speakers[spk], n_query=8)
            cand = [c for c in cand if c.key not in used] or [c for c in speakers[spk] if c.key not in used]
            if cand:
                voice_of[n] = cand
    wav_cache: dict = {}
    per_photo = []
    for k, p in enumerate(known_q):
        c = voice_of.get(p.identity)
        per_photo.append(None if not c else c[k % len(c)].path)
    for path in {x for x in per_photo if x is not None}:
        try:
            wav_cache[path] = voice_waveform(path)
        except InputError:
            pass
    paths = sorted(wav_cache)
    vemb = dict(zip(paths, embed_voices([wav_cache[p] for p in paths])))
    voice = torch.zeros(len(known_q), 256)
    has_v = torch.zeros(len(known_q), dtype=torch.bool)
    for i, path in enumerate(per_photo):
        if path in vemb:
            voice[i] = torch.from_numpy(vemb[path])
            has_v[i] = True
    return voice, has_v


def main(argv: list[str] | None = None) -> None:
    """``python -m mbm.evaluate --scenario portrait --data DIR [--enroll K] --json``."""
    import argparse

    from mbm.cli import print_result
    from mbm.scenarios.portrait.model import load_portrait_model
    from mbm.scenarios.portrait.predictor import DEFAULT_CHECKPOINT, SHIPPED_GALLERY

    ap = argparse.ArgumentParser(description="Evaluate the portrait scenario on a data folder.")
    ap.add_argument("--scenario", default="portrait", choices=("portrait",))
    ap.add_argument("--data", type=Path, required=True, help="folder laid out like ../shared/data")
    ap.add_argument("--enroll", type=int, default=None, help="enrol unknown people from their first K photos")
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    ap.add_argument("--gallery", type=Path, default=SHIPPED_GALLERY,
                    help="gallery JSON (default: the shipped one; checkpoints/portrait_gallery_heldout.json "
                         "leaves our test people out)")
    ap.add_argument("--no-fused", action="store_true", help="skip the face+voice+profile metric")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if not a.data.is_dir():
        ap.error(f"data folder not found: {a.data}")
    if a.enroll is not None and a.enroll < 1:
        ap.error("--enroll must be at least 1")
    try:
        model, _ = load_portrait_model(a.checkpoint)
        gallery = Gallery.load(a.gallery)
    except ValueError as e:
        ap.error(str(e))
    res = evaluate_portrait(model, gallery, a.data, enroll=a.enroll, fused=not a.no_fused)
    res.update(scenario="portrait", enroll=a.enroll, gallery=str(a.gallery))
    print_result(res, a.json)


if __name__ == "__main__":
    main()
