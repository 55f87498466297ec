"""A folder of N photos for the scale measurements of ``python -m mbm.scenarios.retrieval.index build`` (issue 29, item 6).

    PYTHONPATH=. python tools/experiments/retrieval_scripts/make_scale_folder.py [--data ../shared/data] [--out /tmp/mbm_scale_10k] [--n 10000]

Copies the photos of DATA (devices, not_devices, collections, devices_sample, faces: 4,856 photos, most
<= 256 px) round-robin until there are N, each copy lightly altered so no two files are the same
bytes or pixels: a random crop keeping 85-100 % of each side, a mirror half the time, brightness and
contrast x0.9-1.1, re-saved as JPEG at quality 80-95. Copy k of ``DIR/name.jpg`` is
``OUT/DIR/name_v<k>.jpg``. Deterministic (seed 0). The folder is for measuring only: keep it out of
the repository (the default is under /tmp); the shared photos' licences apply to it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm")
PHOTO_FOLDERS = ("devices", "not_devices", "collections", "devices_sample", "faces")


def sources(data: Path) -> list[Path]:
    """Every photo under DATA's photo folders, sorted."""
    out = []
    for sub in PHOTO_FOLDERS:
        out += [p for p in (data / sub).rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()]
    return sorted(out)


def altered(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, int]:
    """A light, random change of a photo: crop, mirror, brightness, contrast; and a JPEG quality."""
    img = img.convert("RGB")
    w, h = img.size
    cw, ch = max(8, round(w * rng.uniform(0.85, 1.0))), max(8, round(h * rng.uniform(0.85, 1.0)))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = img.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        img = ImageOps.mirror(img)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.9, 1.1))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.9, 1.1))
    return img, int(rng.integers(80, 96))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/mbm_scale_10k"))
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.n < 1:
        print("error: --n must be at least 1", file=sys.stderr)
        return 2
    src = sources(a.data)
    if not src:
        print(f"error: no photos under {a.data} ({', '.join(PHOTO_FOLDERS)})", file=sys.stderr)
        return 2
    t, made = time.time(), 0
    for k in range(a.n):
        p = src[k % len(src)]
        dest = a.out / p.parent.relative_to(a.data) / f"{p.stem}_v{k // len(src)}.jpg"
        if dest.exists():  # a rerun keeps what is there
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(p) as im:
            img, quality = altered(im, np.random.default_rng([a.seed, k]))  # each copy its own stream
        tmp = dest.with_name(f".{dest.name}.tmp")
        img.save(tmp, format="JPEG", quality=quality)
        tmp.replace(dest)
        made += 1
    print(f"{a.n} photos in {a.out} ({made} written, {len(src)} sources) in {time.time() - t:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
