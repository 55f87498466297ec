"""Reading a folder laid out like ../shared/data for retrieval: photos, classes, sources, features.

Features of the frozen encoders are cached per file (backbone, path, size, mtime) under cache/retrieval/.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

import numpy as np

from mbm.data import tts
from mbm.paths import CACHE

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff")
FEATURE_CACHE = CACHE / "retrieval"


def source_of(name: str) -> str:
    """The photo's source from its file-name prefix (``off_amazon_``, ``tin_``, ...)."""
    parts = Path(name).name.split("_")
    if parts[0] == "off" and len(parts) > 2:
        return "_".join(parts[:2])
    return parts[0] if len(parts) > 1 else "?"


def held_out(name: str, share: int = 3) -> bool:
    """A fixed 30 % of photos (by a hash of the file name) never used in training."""
    return int(hashlib.sha1(Path(name).name.encode()).hexdigest(), 16) % 10 < share


def device_photos(root: Path) -> list[tuple[Path, str]]:
    """(path, class) of DIR/devices/<class>/*, sorted."""
    out = []
    for d in sorted(p for p in (root / "devices").iterdir() if p.is_dir()):
        out += [(f, d.name) for f in sorted(d.iterdir()) if f.suffix.lower() in PHOTO_SUFFIXES]
    return out


def photo_features_cached(paths: list[Path], progress: bool = False,
                          use_cache: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(pooled (N, IMAGE_DIM), probs (N, 1000), errors) for paths; unreadable photos get zero rows + an error.

    A cached file is keyed by the backbone (``PHOTO_BACKBONE``) as well as the photo, so features of another
    backbone (the SqueezeNet ones of earlier checkpoints) are never read back; one of another width is recomputed."""
    from mbm.scenarios.retrieval import encoders as enc

    IMAGE_DIM, N_CLASSES = enc.IMAGE_DIM, enc.N_CLASSES

    FEATURE_CACHE.mkdir(parents=True, exist_ok=True)
    pooled = np.zeros((len(paths), IMAGE_DIM), np.float32)
    probs = np.zeros((len(paths), N_CLASSES), np.float32)
    errors: list[str] = []
    todo, keys, slot = [], [], {}
    for i, p in enumerate(paths):
        st = p.stat()
        key = hashlib.sha1(f"{enc.PHOTO_BACKBONE}|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
        f = FEATURE_CACHE / f"{key}.npz"
        cached = None
        if use_cache and f.exists():
            with np.load(f, allow_pickle=False) as z:
                if z["pooled"].shape == (IMAGE_DIM,) and z["probs"].shape == (N_CLASSES,):
                    cached = z["pooled"], z["probs"]
        if cached is not None:
            pooled[i], probs[i] = cached
        else:
            slot[i] = len(todo)
            todo.append(i)
            keys.append(f)
    it = range(0, len(todo), 32)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="photo features", unit="batch")
    for s in it:
        idx, photos = [], []
        for i in todo[s:s + 32]:
            try:
                photos.append(enc.load_photo(paths[i]))
                idx.append(i)
            except Exception as e:  # noqa: BLE001 - listed, not fatal
                errors.append(f"{paths[i]}: {e}")
        if photos:
            a, b = enc.photo_features(photos)
            for j, i in enumerate(idx):
                pooled[i], probs[i] = a[j], b[j]
                if use_cache:
                    np.savez(keys[slot[i]], pooled=a[j], probs=b[j])
    return pooled, probs, errors


# --- synthetic speech (training voices and held-out query voices apart) ---------------------------

TRAIN_VOICES = (("flite", "kal"), ("flite", "slt"), ("espeak-ng", "en-us"))
QUERY_VOICES = (("flite", "awb"), ("flite", "rms"), ("espeak-ng", "en-gb"), ("espeak-ng", "en+f3"))


def synthesize(text: str, voice: tuple[str, str]) -> np.ndarray:
    """Text -> 16 kHz mono float32 with flite or espeak-ng (cached under cache/retrieval/tts)."""
    import soundfile as sf

    from mbm.safe_media import mono_at

    d = FEATURE_CACHE / "tts"
    d.mkdir(parents=True, exist_ok=True)
    f = d / (re.sub(r"[^a-z0-9]+", "_", f"{voice[0]}_{voice[1]}_{text}".lower())[:120] + ".wav")
    if not f.exists():
        with tempfile.TemporaryDirectory() as tmp:
            out = tts.speak(text, voice[0], voice[1], Path(tmp) / "a.wav")
            sf.write(f, mono_at(*sf.read(out, dtype="float32"), 16000, what="the synthetic speech"), 16000)
    x, _ = sf.read(f, dtype="float32")
    return x
