"""Train the retrieval heads: ``python -m mbm.train --scenario retrieval [--data DIR] [--out PATH]``.

Frozen features (EfficientNet-Lite0 photos, MiniLM + ConSE texts, PocketSphinx transcripts of synthetic
spoken captions in the *training* voices) -> two linear heads into one 128-d space, trained with
InfoNCE (CLIP-style, both directions) on photo <-> caption / spoken-name pairs:

- unsupervised: each photo's own sampled caption is its only positive (the pairing is the signal);
- supervised: every caption of the photo's class in the batch is a positive (labels help).

The typed captions, with the text head's vectors for them, become the anchors a text is read through
(``Space.text_sem``), and the margin under which a text counts as off the subject is chosen on the
validation paraphrases (``choose_off_topic_margin``). The heads and the appearance PCA (64) are fitted
on 80 % of the training photos; the scoring constants (the semantic scale ``a`` and the default slider
weights) are chosen on the other 20 % (``validation_photo``), photos the shipped heads never saw: chosen
on the fitted photos themselves they came out too low for unseen ones. The 30 % held-out
photos (``mbm.scenarios.retrieval.data.held_out``) are never seen. ~1-2 min on 2 cores with cached features.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import torch

from mbm.checkpoint import save_checkpoint
from mbm.cli import read_recipe
from mbm.paths import RETRIEVAL_CHECKPOINT, ROOT
from mbm.scenarios.retrieval.spec import CLASSES, EVAL_PARAPHRASES, MIXED_TEXTS, TRAIN_CAPTIONS, VALIDATION_PARAPHRASES

DEFAULT_DATA = ROOT.parent / "shared" / "data"


def training_texts(voices=None) -> tuple[list[str], list[int], list[str]]:
    """(texts, class index, kind) = typed captions + transcripts of their synthetic speech."""
    from mbm.scenarios.retrieval.data import TRAIN_VOICES, synthesize
    from mbm.scenarios.retrieval.speech import recognizer

    texts, labels, kinds = [], [], []
    rec, _ = recognizer(tuple(c for caps in TRAIN_CAPTIONS.values() for c in caps))  # used by this thread alone
    for c, cls in enumerate(CLASSES):
        for cap in TRAIN_CAPTIONS[cls]:
            texts.append(cap); labels.append(c); kinds.append("typed")
            for voice in (voices if voices is not None else TRAIN_VOICES):
                wave = synthesize(cap, voice)
                heard = rec.transcribe(wave / max(1e-3, float(np.abs(wave).max())) * 0.7)
                if heard:
                    texts.append(heard); labels.append(c); kinds.append("spoken")
    return texts, labels, kinds


def info_nce(photo: torch.Tensor, text: torch.Tensor, same: torch.Tensor, scale: torch.Tensor,
             supervised: float) -> torch.Tensor:
    """Symmetric InfoNCE; positives = the diagonal (unsupervised) and ``same`` (supervised) mixed."""
    logits = scale * photo @ text.T
    eye = torch.eye(len(photo))
    loss = 0.0
    for target in (eye, same):
        t = target / target.sum(1, keepdim=True)
        w = supervised if target is same else 1 - supervised
        loss = loss + w * 0.5 * (-(t * logits.log_softmax(1)).sum(1).mean()
                                 - (t.T / t.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean())
    return loss


def fit_heads(pooled, probs, labels, t_min, t_conse, t_labels, steps=1500, batch=256, supervised=0.9, seed=0):
    from mbm.scenarios.retrieval.model import Heads, photo_input, text_input

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    heads = Heads()
    xp, xt = photo_input(pooled, probs), text_input(t_min, t_conse)
    labels, t_labels = np.asarray(labels), np.asarray(t_labels)
    by_class = [np.flatnonzero(t_labels == c) for c in range(len(CLASSES))]
    # balanced batches: fan is small
    photo_by_class = [np.flatnonzero(labels == c) for c in range(len(CLASSES))]
    opt = torch.optim.AdamW(heads.parameters(), lr=2e-3, weight_decay=1e-2)
    for step in range(steps):
        cls = rng.integers(0, len(CLASSES), batch)
        pi = np.array([rng.choice(photo_by_class[c]) for c in cls])
        ti = np.array([rng.choice(by_class[c]) for c in cls])
        p = heads.photo_sem(xp[pi] + 0.02 * torch.randn(len(pi), xp.shape[1]))
        t = heads.text_sem(xt[ti])
        same = torch.from_numpy((cls[:, None] == cls[None, :]).astype(np.float32))
        loss = info_nce(p, t, same, heads.log_scale.exp().clamp(max=100), supervised)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step} loss {loss.item():.3f}", flush=True)
    return heads.eval()


@torch.inference_mode()
def caption_anchors(heads, texts: list[str], t_min: np.ndarray, t_conse: np.ndarray,
                    kinds: list[str]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The typed training captions (``kinds`` "typed" among the training texts and their features, in
    ``TRAIN_CAPTIONS`` order) as anchors: (the captions, MiniLM (K, 384), the text head's semantic
    vectors (K, 128)).

    Typed only: adding the spoken-caption transcripts as anchors lowered the validation paraphrases'
    mAP (0.745 against 0.795; docs/retrieval.md)."""
    from mbm.scenarios.retrieval.model import text_input

    typed = np.array([k == "typed" for k in kinds])
    minilm = t_min[typed]
    captions = tuple(t for t, k in zip(texts, kinds) if k == "typed")
    return captions, minilm, heads.text_sem(text_input(minilm, t_conse[typed])).numpy()


OFF_TOPIC_FALSE_FLAGS = 0.05  # at most this share of the validation paraphrases may be called off the subject


def other_class_names() -> tuple[tuple[str, ...], np.ndarray]:
    """The ImageNet class names that are none of the devices and their unit MiniLM vectors (M, 384),
    rounded to float16 as the checkpoint stores them."""
    from mbm.features.imagenet_devices import IMAGENET_CLASSES
    from mbm.scenarios.retrieval.encoders import class_name_vectors, imagenet_names

    device_classes = {i for ids in IMAGENET_CLASSES.values() for i in ids}
    keep = [i for i in range(len(imagenet_names())) if i not in device_classes]
    vectors = class_name_vectors()[keep].astype(np.float16).astype(np.float32)
    return tuple(imagenet_names()[i] for i in keep), vectors


def choose_off_topic_margin(space) -> float:
    """The highest margin (steps of 0.01) that calls at most ``OFF_TOPIC_FALSE_FLAGS`` of the validation
    paraphrases off the subject (a text is off it when its margin is below)."""
    from mbm.scenarios.retrieval.encoders import text_vectors

    margins = space.topic_margins(text_vectors([t for ts in VALIDATION_PARAPHRASES.values() for t in ts]))
    grid = np.round(np.arange(-1.0, 0.5, 0.01), 2)
    return float(max(t for t in grid if (margins < t).mean() <= OFF_TOPIC_FALSE_FLAGS))


def fit_pca(pooled: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    x = pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-8)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean.astype(np.float32), vt[:k].astype(np.float32)


def validation_photo(name: str) -> bool:
    """A fixed 20 % of the training photos (a salted hash of the file name) that the heads are not fitted
    on: the scoring constants are chosen on them."""
    return int(hashlib.sha1(f"{Path(name).name}|validation".encode()).hexdigest(), 16) % 5 == 0


SEMANTIC_SHARES = (0.4, 0.6, 0.8)  # a^2
TEXT_WEIGHTS = (1.0, 2.0, 3.0, 5.0, 8.0, 12.0)


def choose_constants(space, pooled, probs, labels, sources):
    """The semantic scale a and the default weights, by mixed r1 on the given (validation) photos: the
    smallest text weight within one standard error of the best r1 (docs/retrieval.md)."""
    from mbm.scenarios.retrieval.encoders import text_vectors
    from mbm.scenarios.retrieval.metrics import mixed_r1

    sem, app = space.photo_sem(pooled, probs), space.appearance(pooled)
    mixed_sem = space.text_sem(text_vectors([MIXED_TEXTS[c] for c in CLASSES]))
    rows = []
    for a2 in SEMANTIC_SHARES:
        space.a = float(np.sqrt(a2))
        vectors = space.item_vectors(sem, app)
        for wt in TEXT_WEIGHTS:
            m = mixed_r1(space, vectors, sem, app, np.asarray(labels), sources, mixed_sem, {"photo": 1.0, "text": wt})
            rows.append((m["mixed"], a2, wt, m["text"], m["n"]))
    # One-standard-error rule: the smallest text weight whose r1 is within one binomial standard error of the
    # best (the photo keeps a say in a mixed query where the difference is noise), then the best r1 among those.
    top = max(rows)
    se = float(np.sqrt(top[0] * (1 - top[0]) / max(top[4], 1)))
    near = [r for r in rows if r[0] >= top[0] - se]
    best = min(near, key=lambda r: (r[2], -r[0]))
    print("validation mixed r1 (a^2, text weight): " + ", ".join(f"{r[1]}/{r[2]:g} {r[0]:.3f}" for r in rows), flush=True)
    print(f"constants: a^2={best[1]} text weight={best[2]} (validation mixed r1 {best[0]:.3f}; best {top[0]:.3f} "
          f"at {top[1]}/{top[2]:g}, one standard error {se:.3f}; text alone {best[3]:.3f}; {best[4]} queries)",
          flush=True)
    space.a = float(np.sqrt(best[1]))
    space.weights = {"speech": best[2], "photo": 1.0, "text": best[2], "negative": 0.5 * best[2]}
    return space


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mbm.train --scenario retrieval", description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="retrieval", choices=["retrieval"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=RETRIEVAL_CHECKPOINT)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--supervised", type=float, help="weight of the label positives in InfoNCE")
    ap.add_argument("--anchor-temperature", type=float, help="softmax temperature of a text over the caption anchors")
    read_recipe(ap, Path(__file__).resolve().parent / "recipe.json")  # the shipped recipe as the default
    args = ap.parse_args(argv)
    from mbm.scenarios.retrieval.data import device_photos, held_out, photo_features_cached, source_of
    from mbm.scenarios.retrieval.encoders import text_features
    from mbm.scenarios.retrieval.model import APP_DIM, Space

    t0 = time.time()
    torch.set_num_threads(1)
    items = [(p, c) for p, c in device_photos(args.data) if not held_out(p.name) and c in CLASSES]
    paths = [p for p, _ in items]
    labels = [CLASSES.index(c) for _, c in items]
    pooled, probs, errors = photo_features_cached(paths, progress=True)
    ok = np.abs(pooled).sum(1) > 0
    pooled, probs = pooled[ok], probs[ok]
    labels = np.asarray(labels)[ok]
    sources = [source_of(p.name) for p, k in zip(paths, ok) if k]
    val = np.array([validation_photo(p.name) for p, k in zip(paths, ok) if k])
    texts, t_labels, kinds = training_texts()
    held = {t for ps in EVAL_PARAPHRASES.values() for t in ps}
    assert not held & set(texts), "a held-out paraphrase is among the training texts"
    print(f"{len(labels)} training photos ({len(errors)} unreadable; {int((~val).sum())} to fit, "
          f"{int(val.sum())} to choose constants on), {len(texts)} texts "
          f"({kinds.count('spoken')} spoken transcripts)", flush=True)
    t_min, t_conse = text_features(texts)
    heads = fit_heads(pooled[~val], probs[~val], labels[~val], t_min, t_conse, t_labels, steps=args.steps,
                      seed=args.seed, supervised=args.supervised)
    mean, comps = fit_pca(pooled[~val], APP_DIM)
    anchor_captions, anchor_text, anchor_sem = caption_anchors(heads, texts, t_min, t_conse, kinds)
    other_names, other_text = other_class_names()
    space = Space(heads, mean, comps, a=np.sqrt(0.7), weights={}, anchor_text=anchor_text, anchor_sem=anchor_sem,
                  anchor_temperature=args.anchor_temperature,
                  anchor_captions=anchor_captions,
                  other_text=other_text, other_names=other_names, off_topic_margin=0.0)
    space.off_topic_margin = choose_off_topic_margin(space)
    print(f"off-topic margin {space.off_topic_margin:+.2f} (validation paraphrases)", flush=True)
    space = choose_constants(space, pooled[val], probs[val], labels[val], [s for s, v in zip(sources, val) if v])
    # the open vocabulary: the ImageNet concepts read with MiniLM, and the constants chosen on
    # validation material (docs/retrieval.md); nothing in it is fitted here
    from mbm.scenarios.retrieval.concepts import Concepts

    space.concepts = Concepts.build()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    trained_on = {"photos": int((~val).sum()), "constants_chosen_on_photos": int(val.sum()),
                  "texts": len(texts), "steps": args.steps, "seed": args.seed,
                  "anchor_temperature": args.anchor_temperature, "held_out": "sha1(file name) % 10 < 3"}
    save_checkpoint(space.checkpoint({"trained_on": trained_on}), args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
