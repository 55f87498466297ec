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

from mbm.scenarios.retrieval.folder import PHOTO_SUFFIXES
from mbm.scenarios.retrieval.metrics import average_precision, mean_ap_scores, mixed_r1, r1_leave_one_out
from mbm.scenarios.retrieval.spec import CLASSES, EVAL_PARAPHRASES, MIXED_TEXTS, OFF_TOPIC_TEXTS, SPOKEN_NAMES


def memory_index(space, pooled: np.ndarray, probs: np.ndarray):
    """An in-memory index of photos alone (no captions, and no file or folder names: in an evaluation
    folder those are the labels), with the open-vocabulary arrays, scored as the app scores."""
    from mbm.scenarios.retrieval.index import OPEN_ARRAYS, Index, add_open_vocabulary, open_arrays

    n = len(pooled)
    sem, app = space.photo_sem(pooled, probs), space.appearance(pooled)
    ov = open_arrays(n)
    add_open_vocabulary(ov, list(range(n)), probs, [""] * n)
    return Index(space.item_vectors(sem, app), sem, app, np.zeros_like(sem), np.zeros(n, bool),
                 [{"path": f"{i}.jpg"} for i in range(n)], Path("."), **{k: ov[k] for k in OPEN_ARRAYS})


def text_score_matrix(space, index, texts: list[str]) -> np.ndarray:
    """(Q, N): each text's similarity to every item, as a text query of the app (slider 1)."""
    from mbm.scenarios.retrieval.search import encode_query, score_all

    out = np.zeros((len(texts), len(index)), np.float32)
    for i, t in enumerate(texts):
        terms, _ = score_all(space, index, encode_query(space, index, text=t), {"text": 1.0})
        out[i] = terms["text"]
    return out


def photo_score_matrix(space, index, probs: np.ndarray) -> np.ndarray:
    """(N, N): each item's photo as a photo query of the app (slider 1) against every item."""
    from mbm.scenarios.retrieval.search import Query, score_all

    gates = space.concepts.photo_gate(probs)
    out = np.zeros((len(index), len(index)), np.float32)
    for i in range(len(index)):
        q = Query({"photo": space.photo_query(gates[i] * index.photo_sem[i], index.app[i])}, None,
                  open={"photo": {"probs": probs[i], "gate": float(gates[i])}})
        out[i] = score_all(space, index, q, {"photo": 1.0})[0]["photo"]
    return out


TOPIC_TEXTS = Path(__file__).resolve().parents[3] / "tools" / "experiments" / "retrieval_scripts" / "topic_texts.json"
EVERYDAY_QUERIES = TOPIC_TEXTS.with_name("everyday_queries.json")


def topic_flags(space, index, fair_extra: list[str] = ()) -> dict:
    """Share of plainly unrelated texts flagged off topic, and of fair queries (the device evaluation
    paraphrases, the everyday queries, the list's own fair texts and ``fair_extra``) flagged: texts
    written before any scoring (tools/experiments/retrieval_scripts/topic_texts.json)."""
    from mbm.scenarios.retrieval.encoders import text_vectors

    if not TOPIC_TEXTS.is_file():
        return {}
    lists = json.loads(TOPIC_TEXTS.read_text(encoding="utf-8"))
    fair = list(lists["fair"]) + [t for ts in EVAL_PARAPHRASES.values() for t in ts] + list(fair_extra)
    if EVERYDAY_QUERIES.is_file():
        fair += [t for ts in json.loads(EVERYDAY_QUERIES.read_text(encoding="utf-8")).values() for t in ts]
    fair = list(dict.fromkeys(fair))
    un = space.off_topic_open(text_vectors(lists["unrelated"]), index)
    fa = space.off_topic_open(text_vectors(fair), index)
    return {"unrelated_flagged": float(un.mean()), "fair_flagged": float(fa.mean()),
            "fair_flagged_texts": [t for t, f in zip(fair, fa) if f],
            "unrelated_missed_texts": [t for t, f in zip(lists["unrelated"], un) if not f],
            "topic_counts": {"unrelated": len(un), "fair": len(fa)}}


def evaluate_collection(folder: Path, queries: dict[str, list[str]], checkpoint: Path | None = None,
                        use_cache: bool = True) -> dict:
    """Any labelled folder ``<class>/<photos>`` and query texts per class: text -> photo mAP, the same texts
    spoken by voices never used in training -> photo mAP, photo -> photo R@1 (each against the others), the
    off-topic shares, chance and counts. File and folder names are not searched (they are the labels), and
    the recogniser listens for the device phrases (and the general language model), not for the folder names."""
    import torch

    from mbm.scenarios.retrieval.data import QUERY_VOICES, photo_features_cached, synthesize
    from mbm.scenarios.retrieval.model import load_space
    from mbm.scenarios.retrieval.speech import recognizer

    t0 = time.time()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    space = load_space(checkpoint)
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    unknown = sorted(set(queries) - set(classes))
    if unknown:
        raise ValueError(f"the queries name classes with no folder in {folder}: {unknown}")
    items = [(f, c) for c in classes for f in sorted((folder / c).iterdir())
             if f.suffix.lower() in PHOTO_SUFFIXES and not f.name.startswith(".")]
    pooled, probs, errors = photo_features_cached([f for f, _ in items], use_cache=use_cache)
    ok = np.abs(pooled).sum(1) > 0
    labels = np.array([classes.index(c) for _, c in items])[ok]
    pooled, probs = pooled[ok], probs[ok]
    index = memory_index(space, pooled, probs)
    texts = [(t, classes.index(c)) for c, ts in queries.items() for t in ts]
    res: dict = {"chance": {}, "counts": {"photos": int(ok.sum()), "unreadable_photos": len(errors),
                                          "classes": len(classes), "text_queries": len(texts)}}
    s = text_score_matrix(space, index, [t for t, _ in texts])
    q_labels = [c for _, c in texts]
    res["collection_text_to_image_map"], res["chance"]["collection_text_to_image_map"] = mean_ap_scores(
        s, q_labels, labels)
    res["collection_text_to_image_map_per_query"] = {t: round(average_precision(s[i], labels == c), 4)
                                                     for i, (t, c) in enumerate(texts)}
    rec, _ = recognizer()  # the device phrases, as the app hears a spoken query (free=True)
    heard, s_labels, voices = [], [], []
    for t, c in texts:
        for voice in QUERY_VOICES:
            w = synthesize(t, voice)
            heard.append(rec.transcribe(w * (0.7 / max(float(np.abs(w).max()), 1e-3)), free=True) or "")
            s_labels.append(c)
            voices.append("_".join(voice))
    answered = np.array([bool(h) for h in heard])
    sq = text_score_matrix(space, index, [h or "?" for h in heard])
    res["collection_spoken_to_image_map"], res["chance"]["collection_spoken_to_image_map"] = mean_ap_scores(
        sq, s_labels, labels, answered)
    res["collection_spoken_voices"] = sorted(set(voices))
    res["collection_spoken_transcript_exact"] = round(float(np.mean(
        [texts[i // len(QUERY_VOICES)][0].lower() in h for i, h in enumerate(heard)])), 4)
    res["collection_spoken_queries_synthetic"] = True
    res["counts"].update(spoken_queries=len(heard), spoken_queries_nothing_heard=int((~answered).sum()))
    ps = photo_score_matrix(space, index, probs)
    r = r1_leave_one_out(np.eye(len(ps), dtype=np.float32), ps, list(labels))
    res["collection_image_to_image_r1"], res["chance"]["collection_image_to_image_r1"] = r["r1"], r["chance"]
    res["counts"]["image_queries"] = r["queries"]
    res.update(topic_flags(space, index))
    res["seconds"] = round(time.time() - t0, 1)
    return _rounded(res)


def evaluate(root: Path, checkpoint: Path | None = None, max_clips: int | None = None,
             use_cache: bool = True) -> dict:
    """Every metric on DIR (laid out like ../shared/data): off the subject, the devices (text, photo, spoken
    and mixed queries), faces and who spoke; chance per metric, counts and seconds."""
    import torch

    from mbm.scenarios.retrieval.evaluate_people import evaluate_faces, evaluate_voices
    from mbm.scenarios.retrieval.model import load_space

    t0 = time.time()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    space = load_space(checkpoint)
    res: dict = {"chance": {}, "counts": {}}
    # --- off the subject: texts about none of the classes, and the evaluation paraphrases ---------
    texts = [(t, c) for c, ts in EVAL_PARAPHRASES.items() for t in ts]
    res.update(topic_flags(space, None))
    res["counts"].update(off_topic_texts=len(OFF_TOPIC_TEXTS), on_topic_texts=len(texts))
    _evaluate_devices(res, space, root, texts, use_cache)
    evaluate_faces(res, root)
    evaluate_voices(res, root, max_clips)
    res["seconds"] = round(time.time() - t0, 1)
    return _rounded(res)


def _rounded(res: dict) -> dict:
    """The results with every float (and every chance) to 4 places."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()} | {
        "chance": {k: round(v, 4) for k, v in res["chance"].items()}}


def _evaluate_devices(res: dict, space, root: Path, texts: list[tuple[str, str]], use_cache: bool) -> None:
    """The device photos as the app searches them: text -> photo mAP (+ per class), photo -> photo R@1, spoken
    names, and mixed queries (photo of one device + a text naming another) into ``res``."""
    from mbm.scenarios.retrieval.data import device_photos, photo_features_cached, source_of
    from mbm.scenarios.retrieval.encoders import text_vectors

    items = [(p, c) for p, c in device_photos(root) if c in CLASSES] if (root / "devices").is_dir() else []
    paths = [p for p, _ in items]
    pooled, probs, errors = photo_features_cached(paths, use_cache=use_cache)
    ok = np.abs(pooled).sum(1) > 0
    labels = np.array([CLASSES.index(c) for _, c in items])[ok]
    sources = [source_of(p.name) for p, k in zip(paths, ok) if k]
    pooled, probs = pooled[ok], probs[ok]
    index = memory_index(space, pooled, probs)
    sem, app, vectors = index.photo_sem, index.app, index.vectors
    res["counts"].update(photos=int(ok.sum()), unreadable_photos=len(errors))
    if not len(labels):
        return
    q_labels = [CLASSES.index(c) for _, c in texts]
    s = text_score_matrix(space, index, [t for t, _ in texts])
    res["text_to_image_map"], res["chance"]["text_to_image_map"] = mean_ap_scores(s, q_labels, labels)
    per_class = defaultdict(list)
    for i, c in enumerate(q_labels):
        per_class[CLASSES[c]].append(average_precision(s[i], labels == c))
    res["text_to_image_map_per_class"] = {k: round(float(np.mean(v)), 4) for k, v in per_class.items()}
    res["counts"]["text_queries"] = len(texts)
    ps = photo_score_matrix(space, index, probs)
    r = r1_leave_one_out(np.eye(len(ps), dtype=np.float32), ps, list(labels))
    res["image_to_image_r1"], res["chance"]["image_to_image_r1"] = r["r1"], r["chance"]
    _evaluate_spoken_names(res, space, index, labels)
    mixed_sem = space.text_sem(text_vectors([MIXED_TEXTS[c] for c in CLASSES]))
    mt = text_score_matrix(space, index, [MIXED_TEXTS[c] for c in CLASSES]).T
    m = mixed_r1(space, vectors, sem, app, labels, sources, mixed_sem, space.weights, limit=1000,
                 photo_scores=ps, text_scores=mt)
    res["mixed_query_r1"], res["mixed_query_r1_photo_only"], res["mixed_query_r1_text_only"] = m["mixed"], m["photo"], m["text"]
    res["chance"]["mixed_query_r1"] = m["chance"]
    res["counts"]["mixed_queries"] = m["n"]


def _evaluate_spoken_names(res: dict, space, index, labels: np.ndarray) -> None:
    """Spoken device names -> photo mAP (overall and per synthetic voice), the transcripts' exactness, and the same
    names typed (what a perfect recogniser would reach) into ``res``. The voices are synthetic ones never used in
    training (DIR has no spoken device names)."""
    from mbm.scenarios.retrieval.data import QUERY_VOICES, synthesize
    from mbm.scenarios.retrieval.speech import recognizer

    vocab = tuple(sorted({n for ns in SPOKEN_NAMES.values() for n in ns} | {c.replace("_", " ") for c in CLASSES}))
    # as the app hears a spoken query: the collection's phrases (here the names), and the free decoder
    rec, _ = recognizer(vocab)
    spoken_flat = [n for ns in SPOKEN_NAMES.values() for n in ns for _ in QUERY_VOICES]
    heard, s_labels, voices, correct = [], [], [], 0
    for c, names in SPOKEN_NAMES.items():
        for name in names:
            for voice in QUERY_VOICES:
                w = synthesize(name, voice)
                text = rec.transcribe(w * (0.7 / max(float(np.abs(w).max()), 1e-3)), free=True)
                heard.append(text or "")
                s_labels.append(CLASSES.index(c))
                voices.append("_".join(voice))
                correct += name in text
    sq = text_score_matrix(space, index, [h or "?" for h in heard])  # "?": a placeholder row
    answered = np.array([bool(h) for h in heard])
    res["spoken_to_image_map"], res["chance"]["spoken_to_image_map"] = mean_ap_scores(sq, s_labels, labels,
                                                                                      answered)
    by_voice = {}
    for v in dict.fromkeys(voices):  # per synthetic voice: the recogniser differs a lot between engines
        rows = [i for i, x in enumerate(voices) if x == v]
        by_voice[v] = {"map": round(mean_ap_scores(sq[rows], [s_labels[i] for i in rows], labels,
                                                   answered[rows])[0], 4),
                       "transcript_exact": round(float(np.mean([spoken_flat[i] in heard[i] for i in rows])), 4)}
    res["spoken_to_image_map_by_voice"] = by_voice
    names = [(n, CLASSES.index(c)) for c, ns in SPOKEN_NAMES.items() for n in ns]
    nq = text_score_matrix(space, index, [n for n, _ in names])
    res["spoken_names_typed_map"] = mean_ap_scores(nq, [c for _, c in names], labels)[0]
    res["spoken_queries_synthetic"] = True
    res["spoken_transcript_exact"] = round(correct / max(len(heard), 1), 4)
    res["counts"]["spoken_queries"] = len(heard)
    res["counts"]["spoken_queries_nothing_heard"] = int((~answered).sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mbm.evaluate --scenario retrieval", description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="retrieval", choices=["retrieval"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help="a folder laid out like ../shared/data")
    ap.add_argument("--collection", type=Path, help="any labelled folder: <class>/<photos> (with --queries)")
    ap.add_argument("--queries", type=Path, help="JSON: class folder name -> list of query texts")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--max-clips", type=int, default=None, help="evaluate who-spoke on at most this many clips")
    ap.add_argument("--no-cache", action="store_true", help="encode every photo afresh (for timing)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.collection is not None:
        if not args.collection.is_dir() or args.queries is None or not args.queries.is_file():
            print("error: --collection needs a folder of <class>/<photos> and --queries a JSON file", file=sys.stderr)
            return 2
        try:
            queries = json.loads(args.queries.read_text(encoding="utf-8"))
            if not isinstance(queries, dict) or not all(
                    isinstance(v, list) and all(isinstance(t, str) for t in v) for v in queries.values()):
                raise ValueError("it must map each class folder's name to a list of texts")
            res = evaluate_collection(args.collection, queries, args.checkpoint, use_cache=not args.no_cache)
        except ValueError as e:
            print(f"error: {args.queries}: {e}", file=sys.stderr)
            return 2
    elif args.data is None or not args.data.is_dir():
        print(f"error: --data {args.data} is not a folder (or give --collection DIR --queries FILE)", file=sys.stderr)
        return 2
    else:
        res = evaluate(args.data, args.checkpoint, args.max_clips, use_cache=not args.no_cache)
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
