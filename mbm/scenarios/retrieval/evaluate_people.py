"""Who is in a photo, who spoke: face -> person and voice -> speaker R@1 (leave one out) on DIR's real faces
(ORL, Yale) and real speech (Speech Commands, FSDD)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mbm.scenarios.retrieval.metrics import r1_leave_one_out

AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg")


def speech_clips(root: Path) -> list[tuple[Path, str]]:
    """(path, speaker) of DIR's real speech: speech_commands/<word>/<speaker>_nohash_n.wav, fsdd digit_speaker_n."""
    out = []
    sc = root / "speech_commands"
    if sc.is_dir():
        out += [(f, "sc:" + f.name.split("_")[0]) for f in sorted(sc.glob("*/*")) if f.suffix.lower() in AUDIO_SUFFIXES]
    fs = root / "fsdd" / "recordings"
    if fs.is_dir():
        out += [(f, "fsdd:" + f.stem.split("_")[1]) for f in sorted(fs.iterdir())
                if f.suffix.lower() in AUDIO_SUFFIXES and len(f.stem.split("_")) >= 3]
    return out


def face_photos(root: Path) -> list[tuple[Path, str]]:
    """(path, person) of DIR's face photos: faces/orl/<person>/n.pgm, faces/yale/subjectNN.condition."""
    out = []
    orl = root / "faces" / "orl"
    if orl.is_dir():
        out += [(f, "orl:" + f.parent.name) for f in sorted(orl.glob("*/*")) if f.is_file()]
    yale = root / "faces" / "yale"
    if yale.is_dir():
        out += [(f, "yale:" + f.name.split(".")[0]) for f in sorted(yale.iterdir()) if f.is_file()]
    return out


def evaluate_faces(res: dict, root: Path) -> None:
    """face_to_person_r1 (+ its mean per person, chance and counts) into ``res``, where DIR has faces."""
    faces = face_photos(root)
    if not faces:
        return
    from mbm.config import ImageConfig
    from mbm.features.face import face_embedder
    from mbm.preprocess import read_image

    emb = face_embedder()
    chips, ids = [], []
    for f, who in faces:
        try:
            chips.append(emb.chip(np.asarray(read_image(f, ImageConfig())))[0])
            ids.append(who)
        except Exception:  # noqa: BLE001
            res["counts"]["unreadable_faces"] = res["counts"].get("unreadable_faces", 0) + 1
    fv = emb.embed_chips(chips)
    r = r1_leave_one_out(fv, fv, ids)
    res["face_to_person_r1"], res["face_to_person_r1_mean_per_person"] = r["r1"], r["mean_per_identity"]
    res["chance"]["face_to_person_r1"] = r["chance"]
    res["counts"].update(face_queries=r["queries"], face_skipped=r["skipped"], people=r["identities"])


def evaluate_voices(res: dict, root: Path, max_clips: int | None) -> None:
    """voice_to_speaker_r1 (+ its mean per speaker, chance and counts) into ``res`` over at most ``max_clips``
    of DIR's real speech clips (evenly spread)."""
    clips = speech_clips(root)
    if max_clips and len(clips) > max_clips:
        clips = [clips[i] for i in np.linspace(0, len(clips) - 1, max_clips).astype(int)]
    if not clips:
        return
    from mbm.features.voice import embed_voices, voice_waveform

    waves, ids = [], []
    for f, who in clips:
        try:
            waves.append(voice_waveform(str(f)))
            ids.append(who)
        except Exception:  # noqa: BLE001
            res["counts"]["unreadable_clips"] = res["counts"].get("unreadable_clips", 0) + 1
    vv = embed_voices(waves)
    r = r1_leave_one_out(vv, vv, ids)
    res["voice_to_speaker_r1"], res["voice_to_speaker_r1_mean_per_speaker"] = r["r1"], r["mean_per_identity"]
    res["chance"]["voice_to_speaker_r1"] = r["chance"]
    res["counts"].update(voice_queries=r["queries"], voice_skipped=r["skipped"], speakers=r["identities"])
