"""Train the portrait fusion (attention weights + score calibration) and build the shipped gallery.

    python -m mbm.train --scenario portrait --data ../shared/data [--steps 600] [--out checkpoints]
    (same as python -m mbm.scenarios.portrait.train ...)

Pretrained, frozen: dlib face descriptors, Resemblyzer speaker embeddings. Trained
here: the shared fusion block over feature tokens and the per-modality score
calibration, on composed identities of the *training* people, with degraded faces
(blur, occlusion, noise), noisy voices and missing modalities so the attention
learns which modality to trust. People are split by a hash of their name:
train (fusion training), calib (open-set threshold), test (reported only).
Writes ``portrait.pt`` (model + threshold + metrics) and ``portrait_gallery.json``:
the train + calib people of DIR, each enrolled from their first ENROL_K photos, with a
composed voice and a generated profile. The test people are left out of the shipped
gallery: they are the strangers of the default evaluation and of the demo (enrol them
in the app to see enrolment work).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mbm.cli import read_recipe
from mbm.data.faces import by_identity, list_face_photos
from mbm.features.face import face_embedder, sharpness
from mbm.features.voice import embed_voices, voice_waveform
from mbm.scenarios.portrait.engine import Queries, fuse, gallery_tensors
from mbm.scenarios.portrait.evaluate import evaluate_portrait, load_rgb
from mbm.scenarios.portrait.features import embed_profile
from mbm.scenarios.portrait.gallery import Gallery
from mbm.scenarios.portrait.model import PortraitModel, default_config, save_portrait_model
from mbm.scenarios.portrait.spec import (
    COMPOSED_NOTE,
    assign_voices,
    enrol_and_query_clips,
    list_voice_clips,
    make_profile,
    profile_hint,
)

ENROL_K = 3  # photos per person in the galleries (the rest stay for evaluation)


def split_of(name: str) -> str:
    h = int(hashlib.md5(("portrait-split:" + name).encode()).hexdigest(), 16) % 10
    return "test" if h < 2 else "calib" if h < 4 else "train"


def degrade(chip: np.ndarray, kind: str, rng: np.random.RandomState) -> np.ndarray:
    from PIL import Image, ImageFilter

    img = Image.fromarray(chip)
    if kind == "blur":
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(3, 7)))
    elif kind == "occlude":
        a = np.asarray(img).copy()
        h = a.shape[0]
        top = rng.randint(0, h // 2)
        a[top:top + h // 2 + rng.randint(0, h // 4)] = rng.randint(0, 255)
        return a
    elif kind == "noise":
        a = np.asarray(img).astype(np.float32) + rng.normal(0, 60, chip.shape)
        return a.clip(0, 255).astype(np.uint8)
    return np.asarray(img)


VARIANTS = ("clean", "blur", "occlude", "noise")


def face_bank(photos, log, cache: Path | None = None) -> dict:
    """path -> {variant: (embedding, quality)} (chips degraded after alignment); cached in ``cache``."""
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        if list(z["paths"]) == [str(p.path) for p in photos]:
            log(f"face descriptors from {cache}")
            return {p.path: {v: (z["emb"][i, j], float(z["qual"][i, j])) for j, v in enumerate(VARIANTS)}
                    for i, p in enumerate(photos)}
    fe = face_embedder()
    rng = np.random.RandomState(0)
    chips, keys = [], []
    for p in photos:
        chip, _, _ = fe.chip(load_rgb(p.path))
        for v in VARIANTS:
            chips.append(degrade(chip, v, rng) if v != "clean" else chip)
            keys.append((p.path, v))
    log(f"face descriptors for {len(chips)} chips ...")
    emb = np.concatenate([fe.embed_chips(chips[i:i + 64]) for i in range(0, len(chips), 64)])
    bank: dict = {}
    for (path, v), e, c in zip(keys, emb, chips):
        bank.setdefault(path, {})[v] = (e, sharpness(c) / 10)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, paths=np.array([str(p.path) for p in photos]),
                 emb=np.array([[bank[p.path][v][0] for v in VARIANTS] for p in photos]),
                 qual=np.array([[bank[p.path][v][1] for v in VARIANTS] for p in photos]))
    return bank


def add_noise(w: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    snr = rng.uniform(-5, 5)
    p = float((w ** 2).mean())
    return (w + rng.normal(0, np.sqrt(p / 10 ** (snr / 10)), w.shape)).astype(np.float32)


def build(data_dir: Path, steps: int, seed: int, log) -> tuple[PortraitModel, Gallery, dict]:
    """The portrait model trained on the train people, its open-set threshold calibrated on the calib people, and
    the gallery the reported numbers use (train + calib people, their first photos); the calibration."""
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    photos = list_face_photos(data_dir)
    people = by_identity(photos)
    speakers = list_voice_clips(data_dir)
    voice_of = assign_voices(list(people), speakers)
    log(f"{len(people)} people, {len(photos)} photos, {len(set(voice_of.values()))} voices")
    data = _TrainingData(people, face_bank(photos, log, Path("cache/portrait_faces.npz")), voice_of,
                         *_voices(voice_of, speakers, rng))
    split = {n: split_of(n) for n in people}
    train_names = [n for n in people if split[n] == "train"]
    gt = gallery_tensors(data.gallery(train_names, ENROL_K))
    model = PortraitModel(default_config())
    _train_fusion(model, data, train_names, gt, steps, rng, log)
    calib = [n for n in people if split[n] == "calib"]
    cal = _calibrate(model, data, train_names, calib, gt, log)
    # Reported held-out numbers: gallery = train + calib people (first K photos); unknown = test people.
    g_known = data.gallery(train_names + calib, ENROL_K)
    metrics = {"calibration": cal, "split": split}
    return model, g_known, metrics


def _voices(voice_of: dict, speakers: dict, rng: np.random.RandomState) -> tuple[dict, dict, dict]:
    """Per speaker: the voice prototype (mean of the enrolment clips' embeddings), the clean and noisy query
    clips' embeddings, and the enrolment clips' keys."""
    vproto, vqueries, vclips = {}, {}, {}
    for spk in sorted(set(voice_of.values())):
        enrol, query = enrol_and_query_clips(speakers[spk], n_query=8)
        waves = [voice_waveform(c.path) for c in enrol + query]
        noisy = [add_noise(w, rng) for w in waves[len(enrol):]]
        e = embed_voices(waves + noisy)
        p = e[:len(enrol)].mean(0)
        vproto[spk] = p / np.linalg.norm(p)
        vqueries[spk] = {"clean": e[len(enrol):len(waves)], "noisy": e[len(waves):]}
        vclips[spk] = [c.key for c in enrol]
    return vproto, vqueries, vclips


@dataclass
class _TrainingData:
    """Everyone's photos, the face bank (every photo's embedding per variant), and each person's voice."""

    people: dict
    bank: dict
    voice_of: dict
    vproto: dict
    vqueries: dict
    vclips: dict

    def gallery(self, names: list[str], k: int) -> Gallery:
        """A gallery of ``names``, each enrolled from their first k photos, their voice and profile."""
        g = Gallery()
        for n in names:
            ps = self.people[n][:k]
            spk = self.voice_of.get(n)
            g.add(n, np.stack([self.bank[p.path]["clean"][0] for p in ps]), self.vproto.get(spk), make_profile(n),
                  meta={"enrolled_from": [p.path.name for p in ps], "voice_from": spk,
                        "voice_clips": self.vclips.get(spk, []), "composed": True})
        return g


def _train_fusion(model: PortraitModel, data: _TrainingData, train_names: list[str], gt, steps: int,
                  rng: np.random.RandomState, log) -> None:
    """The fusion trained on the train people's other photos against their gallery: each query a degraded face,
    maybe a voice clip (clean or noisy) and maybe a partial profile (now and then another person's)."""
    samples = [(n, p) for n in train_names for p in data.people[n][ENROL_K:]]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    model.train()
    B = 128
    log(f"training the fusion on {len(train_names)} people, {len(samples)} query photos, {steps} steps")
    for step in range(steps):
        batch = [samples[i] for i in rng.randint(len(samples), size=B)]
        out = fuse(model, _queries(data, batch, train_names, step, rng), gt)
        target = torch.tensor([gt.names.index(n) for n, _ in batch])
        # scale the fused score into logits; the margin keeps the true person clearly ahead
        logits = out.scores - 1.0 * F.one_hot(target, len(gt.names))
        loss = F.cross_entropy(2.0 * logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step} loss {loss.item():.3f}")
    model.eval()


def _queries(data: _TrainingData, batch: list, train_names: list[str], step: int,
             rng: np.random.RandomState) -> Queries:
    """One training batch's queries: each input present or not at random (at least one)."""
    B = len(batch)
    face = np.zeros((B, 128), np.float32)
    qual = np.zeros(B, np.float32)
    voice = np.zeros((B, 256), np.float32)
    prof = np.zeros((B, 256), np.float32)
    pres = np.zeros((B, 3), bool)  # audio, image, text
    for i, (n, p) in enumerate(batch):
        v = VARIANTS[rng.choice(4, p=[0.4, 0.2, 0.2, 0.2])]
        face[i], qual[i] = data.bank[p.path][v]
        pres[i, 1] = rng.rand() < 0.85
        spk = data.voice_of.get(n)
        if spk and rng.rand() < 0.6:
            kind = "noisy" if rng.rand() < 0.3 else "clean"
            qs = data.vqueries[spk][kind]
            voice[i] = qs[rng.randint(len(qs))]
            pres[i, 0] = True
        if rng.rand() < 0.5:
            text = profile_hint(make_profile(n), f"{step}-{i}", parts=rng.randint(1, 4))
            if rng.rand() < 0.1:  # a wrong or vague profile now and then
                text = profile_hint(make_profile(train_names[rng.randint(len(train_names))]), f"w{step}-{i}")
            prof[i] = embed_profile(text)
            pres[i, 2] = True
        if not pres[i].any():
            pres[i, 1] = True
    return Queries(torch.from_numpy(face), torch.from_numpy(qual), torch.from_numpy(voice), torch.from_numpy(prof),
                   present={"audio": torch.from_numpy(pres[:, 0]), "image": torch.from_numpy(pres[:, 1]),
                            "text": torch.from_numpy(pres[:, 2])})


def _calibrate(model: PortraitModel, data: _TrainingData, train_names: list[str], calib: list[str], gt,
               log) -> dict:
    """The open-set threshold (set in the model) on the calib people: genuine = their non-enrolment photos with
    them enrolled (K=3); impostor = the same photos with them absent (gallery = train people only). Face-only
    queries; the threshold is the middle of the range that maximises known accuracy + rejection."""
    g_cal = data.gallery(train_names + calib, ENROL_K)
    qs = [p for n in calib for p in data.people[n][ENROL_K:]]
    qf = Queries(face=torch.from_numpy(np.stack([data.bank[p.path]["clean"][0] for p in qs])),
                 face_quality=torch.from_numpy(np.array([data.bank[p.path]["clean"][1] for p in qs], np.float32)))
    with torch.no_grad():
        gen = fuse(model, qf, gallery_tensors(g_cal)).scores
        imp = fuse(model, qf, gt).scores.max(1).values.numpy()
    names = gallery_tensors(g_cal).names
    gbest, gidx = gen.max(1)
    correct = np.array([names[i] == p.identity for i, p in zip(gidx.tolist(), qs)])
    gbest = gbest.numpy()
    grid = np.linspace(-3, 3, 601)
    value = np.array([np.mean(correct & (gbest >= t)) + np.mean(imp < t) for t in grid])
    best_t = float(np.median(grid[value >= value.max() - 1e-9]))  # the middle of the best range
    model.threshold.fill_(best_t)
    cal = {"threshold": best_t, "calib_known_accuracy": float(np.mean(correct & (gbest >= best_t))),
           "calib_rejection": float(np.mean(imp < best_t)), "calib_people": calib}
    log(f"threshold {best_t:.2f}: {cal}")
    return cal


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="portrait", choices=("portrait",))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("checkpoints"))
    ap.add_argument("--steps", type=int)
    ap.add_argument("--seed", type=int)
    read_recipe(ap, Path(__file__).resolve().parent / "recipe.json")  # the shipped recipe as the default
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    log = lambda s: print(s, file=sys.stderr, flush=True)
    model, g_known, metrics = build(a.data, a.steps, a.seed, log)
    held = evaluate_portrait(model, g_known, a.data, enroll=ENROL_K)
    log("held-out people (test split, never trained on nor calibrated on): " + json.dumps(held))
    save_portrait_model(model, a.out / "portrait.pt", extra={"metrics": {**metrics, "heldout_eval": held},
                                                             "note": COMPOSED_NOTE, "enrol_k": ENROL_K})
    g_known.save(a.out / "portrait_gallery.json")
    print(json.dumps(held))


if __name__ == "__main__":
    main()
