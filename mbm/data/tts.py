"""Text-to-speech generator for extra training audio (espeak-ng and flite).

Speech Commands gives only ~10 real clips per word, so the voice-control model
trains mostly on synthetic speech: every command word spoken by many espeak-ng
accents x voice variants x speeds x pitches, and by flite's recorded voices.
The clips are written as 16-bit WAV files under ``OUT/<word>/<voice>.wav`` and
never committed.

Run it directly (``python -m mbm.data.tts --out cache/tts``) or let
``python -m mbm.train`` call it when the cache is missing.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# English accents shipped with espeak-ng (no MBROLA voices needed).
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# Human-sounding espeak-ng voice variants (robotic/whisper ones left out).
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4",
                   "f5", "klatt", "klatt2", "klatt3", "klatt4", "adam", "Alex", "Andy",
                   "aunty", "belinda", "benjamin", "david", "ed", "edward", "john", "linda",
                   "max", "michel", "paul", "rob", "robert", "steph", "steph2", "travis",
                   "victor", "grandma", "grandpa", "Annie", "anika", "norbert", "quincy")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")


@dataclass(frozen=True)
class Utterance:
    """One synthetic clip to render."""

    word: str
    engine: str  # "espeak" or "flite"
    voice: str
    speed: float  # 1.0 = the engine's default rate
    pitch: int  # espeak pitch 0..99 or flite mean f0 in Hz

    @property
    def name(self) -> str:
        return f"{self.engine}-{self.voice.replace('+', '_')}-s{self.speed:.2f}-p{self.pitch}"


def plan_utterances(words: list[str], per_word: int, flite_share: float = 0.25,
                    seed: int = 0) -> list[Utterance]:
    """Draw ``per_word`` distinct (voice, speed, pitch) settings for every word."""
    rng = random.Random(seed)
    plan = []
    for word in words:
        seen: set[str] = set()
        while len(seen) < per_word:
            if rng.random() < flite_share:
                u = Utterance(word, "flite", rng.choice(FLITE_VOICES), rng.choice((0.8, 0.9, 1.0, 1.1, 1.25, 1.4)),
                              rng.choice((80, 95, 110, 125, 140, 160, 180, 200)))
            else:
                voice = f"{rng.choice(ESPEAK_ACCENTS)}+{rng.choice(ESPEAK_VARIANTS)}"
                u = Utterance(word, "espeak", voice, rng.choice((0.7, 0.8, 0.9, 1.0, 1.15, 1.3)),
                              rng.randrange(15, 90, 5))
            if u.name not in seen:
                seen.add(u.name)
                plan.append(u)
    return plan


def render(u: Utterance, out_dir: Path) -> Path:
    """Speak one utterance into ``out_dir/<word>/<name>.wav`` and return the path."""
    path = out_dir / u.word / f"{u.name}.wav"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.wav")
    speak(u.word, u.engine, u.voice, tmp, u.speed, u.pitch)
    tmp.rename(path)
    return path


def speak(text: str, engine: str, voice: str, out: Path, speed: float | None = None, pitch: int | None = None) -> Path:
    """The project's one text-to-speech call: ``text`` spoken into the WAV file ``out`` by espeak-ng
    (``engine`` ``"espeak"`` or ``"espeak-ng"``) or flite, at the engine's own rate and pitch unless given
    (``speed`` 1.0 = the engine's rate; ``pitch`` espeak 0..99 or flite's mean f0 in Hz)."""
    if engine in ("espeak", "espeak-ng"):
        cmd = ["espeak-ng", "-v", voice]
        cmd += [] if speed is None else ["-s", str(int(175 / speed * 1.0))]
        cmd += [] if pitch is None else ["-p", str(pitch)]
        cmd += ["-w", str(out), text]
    elif engine == "flite":
        cmd = ["flite", "-voice", voice]
        cmd += [] if speed is None else ["--setf", f"duration_stretch={speed}"]
        cmd += [] if pitch is None else ["--setf", f"int_f0_target_mean={pitch}"]
        cmd += ["-t", text, "-o", str(out)]
    else:
        raise ValueError(f"unknown text-to-speech engine {engine!r} (espeak-ng or flite)")
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    return out


def generate(words: list[str], out_dir: Path, per_word: int, seed: int = 0,
             workers: int = 2, progress=None) -> list[Path]:
    """Render the whole plan (skipping clips already on disk); returns the WAV paths."""
    if per_word <= 0:
        return []
    for tool in ("espeak-ng", "flite"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed; on Debian: apt-get install espeak-ng flite")
    plan = plan_utterances(words, per_word=per_word, seed=seed)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda u: render(u, out_dir), plan)
        if progress is not None:
            results = progress(results, total=len(plan), desc="text-to-speech")
        return list(results)


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    from mbm.config import TrainConfig
    from mbm.data.labels import WORDS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("cache/tts"), help="output folder")
    parser.add_argument("--per-word", type=int, default=TrainConfig.tts_per_word, help="clips per command word")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = generate(list(WORDS), args.out, per_word=args.per_word, seed=args.seed, progress=tqdm)
    print(f"{len(paths)} clips in {args.out}")


if __name__ == "__main__":
    main()
