"""``python -m mbm.evaluate --scenario retrieval --data DIR [--json] [--checkpoint PATH]``.

DIR is laid out like ../shared/data. One JSON object: text_to_image_map, image_to_image_r1,
spoken_to_image_map (+ spoken_queries_synthetic), mixed_query_r1 (+ _photo_only, _text_only),
face_to_person_r1, voice_to_speaker_r1 (+ per-identity means and skipped counts), off_topic_flagged /
on_topic_flagged (texts about none of the classes / the evaluation paraphrases called off the
subject), chance per metric, counts and seconds. Definitions are in docs/retrieval.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from mbm.scenarios.retrieval.spec import CLASSES, EVAL_PARAPHRASES, MIXED_TEXTS, OFF_TOPIC_TEXTS, SPOKEN_NAMES

AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg")


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    rel = relevant[order]
    if not rel.any():
        return float("nan")
    hits = np.cumsum(rel)
    return float((hits[rel] / (np.flatnonzero(rel) + 1)).mean())


def mean_ap(vectors: np.ndarray, queries: np.ndarray, q_labels, labels: np.ndarray,
            answered: np.ndarray | None = None) -> tuple[float, float]:
    """(mAP, chance mAP ~ share of relevant items) of query vectors over the item vectors; a query
    not ``answered`` (a spoken one where nothing was heard: the app returns no results) counts 0."""
    s = queries @ vectors.T
    answered = np.ones(len(queries), bool) if answered is None else np.asarray(answered, bool)
    aps = [average_precision(s[i], labels == q_labels[i]) if answered[i] else 0.0 for i in range(len(queries))]
    chance = float(np.mean([(labels == c).mean() for c in q_labels]))
    return float(np.nanmean(aps)), chance


def r1_leave_one_out(vectors: np.ndarray, queries: np.ndarray, ids: list) -> dict:
    """Top-1 (the query excluded) of the same identity; queries whose identity has no other item skipped."""
    ids = np.asarray(ids)
    s = queries @ vectors.T
    np.fill_diagonal(s, -np.inf)
    counts = defaultdict(int)
    for i in ids:
        counts[i] += 1
    ok = np.array([counts[i] > 1 for i in ids])
    top = s.argmax(1)
    hit = ids[top] == ids
    per = defaultdict(list)
    for i in np.flatnonzero(ok):
        per[ids[i]].append(hit[i])
    n = len(ids)
    chance = float(np.mean([(counts[ids[i]] - 1) / (n - 1) for i in np.flatnonzero(ok)])) if ok.any() else 0.0
    return {"r1": float(hit[ok].mean()) if ok.any() else float("nan"),
            "mean_per_identity": float(np.mean([np.mean(v) for v in per.values()])) if per else float("nan"),
            "queries": int(ok.sum()), "skipped": int((~ok).sum()), "identities": len(per), "chance": chance}


def mixed_r1(space, vectors, sem, app, labels, sources, mixed_sem, weights, limit=None, seed=0) -> dict:
    """Photo of class A + a text naming class B: the top hit must be a B item of the photo's source."""
    rng = np.random.default_rng(seed)
    sources = np.asarray(sources)
    pairs = [(i, b) for i in range(len(labels)) for b in range(len(CLASSES)) if b != labels[i]
             and np.any((labels == b) & (sources == sources[i]))]
    if limit and len(pairs) > limit:
        pairs = [pairs[j] for j in sorted(rng.choice(len(pairs), limit, replace=False))]
    hits = {"mixed": [], "photo": [], "text": []}
    text_scores = vectors @ space.text_query(mixed_sem).T  # (N, classes)
    for i, b in pairs:
        photo = vectors @ space.photo_query(sem[i], app[i])
        photo[i] = -np.inf
        text = text_scores[:, b].copy()
        text[i] = -np.inf
        rel = (labels == b) & (sources == sources[i])
        for key, s in (("mixed", weights["photo"] * photo + weights["text"] * text), ("photo", photo), ("text", text)):
            hits[key].append(bool(rel[int(np.argmax(s))]))
    out = {k: float(np.mean(v)) if v else float("nan") for k, v in hits.items()}
    out["n"] = len(pairs)
    out["chance"] = float(np.mean([((labels == b) & (sources == sources[i])).sum() / (len(labels) - 1)
                                   for i, b in pairs])) if pairs else 0.0
    return out


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
    out = []
    orl = root / "faces" / "orl"
    if orl.is_dir():
        out += [(f, "orl:" + f.parent.name) for f in sorted(orl.glob("*/*")) if f.is_file()]
    yale = root / "faces" / "yale"
    if yale.is_dir():
        out += [(f, "yale:" + f.name.split(".")[0]) for f in sorted(yale.iterdir()) if f.is_file()]
    return out


def evaluate(root: Path, checkpoint: Path | None = None, max_clips: int | None = None,
             use_cache: bool = True) -> dict:
    import torch

    from mbm.scenarios.retrieval.data import QUERY_VOICES, device_photos, photo_features_cached, source_of, synthesize
    from mbm.scenarios.retrieval.encoders import text_vectors
    from mbm.scenarios.retrieval.model import load_space
    from mbm.scenarios.retrieval.speech import recognizer

    t0 = time.time()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    space = load_space(checkpoint)
    res: dict = {"chance": {}, "counts": {}}
    # --- off the subject: texts about none of the classes, and the evaluation paraphrases ---------
    texts = [(t, c) for c, ts in EVAL_PARAPHRASES.items() for t in ts]
    paraphrases = text_vectors([t for t, _ in texts])  # (28, 384): flagged here, searched with below
    res["off_topic_flagged"] = float(space.off_topic(text_vectors(list(OFF_TOPIC_TEXTS))).mean())
    res["on_topic_flagged"] = float(space.off_topic(paraphrases).mean())
    res["counts"].update(off_topic_texts=len(OFF_TOPIC_TEXTS), on_topic_texts=len(texts))
    # --- devices --------------------------------------------------------------------------------
    items = [(p, c) for p, c in device_photos(root) if c in CLASSES] if (root / "devices").is_dir() else []
    paths = [p for p, _ in items]
    pooled, probs, errors = photo_features_cached(paths, use_cache=use_cache)
    ok = np.abs(pooled).sum(1) > 0
    labels = np.array([CLASSES.index(c) for _, c in items])[ok]
    sources = [source_of(p.name) for p, k in zip(paths, ok) if k]
    pooled, probs = pooled[ok], probs[ok]
    sem, app = space.photo_sem(pooled, probs), space.appearance(pooled)
    vectors = space.item_vectors(sem, app)
    res["counts"].update(photos=int(ok.sum()), unreadable_photos=len(errors))
    if len(labels):
        tq = space.text_query(space.text_sem(paraphrases))
        q_labels = [CLASSES.index(c) for _, c in texts]
        res["text_to_image_map"], res["chance"]["text_to_image_map"] = mean_ap(vectors, tq, q_labels, labels)
        per_class = defaultdict(list)
        s = tq @ vectors.T
        for i, c in enumerate(q_labels):
            per_class[CLASSES[c]].append(average_precision(s[i], labels == c))
        res["text_to_image_map_per_class"] = {k: round(float(np.mean(v)), 4) for k, v in per_class.items()}
        res["counts"]["text_queries"] = len(texts)
        pq = space.photo_query(sem, app)
        r = r1_leave_one_out(vectors, pq, list(labels))
        res["image_to_image_r1"], res["chance"]["image_to_image_r1"] = r["r1"], r["chance"]
        # spoken device names: synthetic voices never used in training (DIR has no spoken device names)
        vocab = tuple(sorted({n for ns in SPOKEN_NAMES.values() for n in ns} | {c.replace("_", " ") for c in CLASSES}))
        rec, _ = recognizer(vocab)  # used by this thread alone
        SPOKEN_FLAT = [n for ns in SPOKEN_NAMES.values() for n in ns for _ in QUERY_VOICES]
        heard, s_labels, voices, correct = [], [], [], 0
        for c, names in SPOKEN_NAMES.items():
            for name in names:
                for voice in QUERY_VOICES:
                    w = synthesize(name, voice)
                    text = rec.transcribe(w * (0.7 / max(float(np.abs(w).max()), 1e-3)))
                    heard.append(text or "")
                    s_labels.append(CLASSES.index(c))
                    voices.append("_".join(voice))
                    correct += name in text
        sq = space.text_query(space.text_sem(text_vectors([h or "?" for h in heard])))  # "?": a placeholder row
        answered = np.array([bool(h) for h in heard])
        res["spoken_to_image_map"], res["chance"]["spoken_to_image_map"] = mean_ap(vectors, sq, s_labels, labels,
                                                                                   answered)
        by_voice = {}
        for v in dict.fromkeys(voices):  # per synthetic voice: the recogniser differs a lot between engines
            rows = [i for i, x in enumerate(voices) if x == v]
            by_voice[v] = {"map": round(mean_ap(vectors, sq[rows], [s_labels[i] for i in rows], labels,
                                                answered[rows])[0], 4),
                           "transcript_exact": round(float(np.mean([SPOKEN_FLAT[i] in heard[i] for i in rows])), 4)}
        res["spoken_to_image_map_by_voice"] = by_voice
        # the same names typed: what a perfect recogniser would reach
        names = [(n, CLASSES.index(c)) for c, ns in SPOKEN_NAMES.items() for n in ns]
        nq = space.text_query(space.text_sem(text_vectors([n for n, _ in names])))
        res["spoken_names_typed_map"] = mean_ap(vectors, nq, [c for _, c in names], labels)[0]
        res["spoken_queries_synthetic"] = True
        res["spoken_transcript_exact"] = round(correct / max(len(heard), 1), 4)
        res["counts"]["spoken_queries"] = len(heard)
        res["counts"]["spoken_queries_nothing_heard"] = int((~answered).sum())
        mixed_sem = space.text_sem(text_vectors([MIXED_TEXTS[c] for c in CLASSES]))
        m = mixed_r1(space, vectors, sem, app, labels, sources, mixed_sem, space.weights, limit=1000)
        res["mixed_query_r1"], res["mixed_query_r1_photo_only"], res["mixed_query_r1_text_only"] = m["mixed"], m["photo"], m["text"]
        res["chance"]["mixed_query_r1"] = m["chance"]
        res["counts"]["mixed_queries"] = m["n"]
    # --- faces ----------------------------------------------------------------------------------
    faces = face_photos(root)
    if faces:
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
    # --- real speech: who spoke ---------------------------------------------------------------
    clips = speech_clips(root)
    if max_clips and len(clips) > max_clips:
        clips = [clips[i] for i in np.linspace(0, len(clips) - 1, max_clips).astype(int)]
    if clips:
        from mbm.scenarios.portrait.features import embed_voices, voice_waveform

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
    res["seconds"] = round(time.time() - t0, 1)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()} | {
        "chance": {k: round(v, 4) for k, v in res["chance"].items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mbm.evaluate --scenario retrieval", description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="retrieval", choices=["retrieval"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--max-clips", type=int, default=None, help="evaluate who-spoke on at most this many clips")
    ap.add_argument("--no-cache", action="store_true", help="encode every photo afresh (for timing)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"error: --data {args.data} is not a folder", file=sys.stderr)
        return 2
    res = evaluate(args.data, args.checkpoint, args.max_clips, use_cache=not args.no_cache)
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
