"""Copy the few portrait demo/test examples from a data folder into assets/portrait/ (credited there).

    python -m tools.make_portrait_assets --data ../shared/data

The layout mirrors the data folder, so ``assets/portrait`` is itself a tiny evaluation set:
s1 and subject01 are in the shipped gallery (their photos here were not enrolled);
s18 and subject11 are held-out test people (strangers until enrolled).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image, ImageFilter

from mbm.scenarios.portrait.spec import enrol_and_query_clips, list_voice_clips

FILES = ["faces/orl/s1/5.pgm", "faces/orl/s1/6.pgm", "faces/yale/subject01.sad.png"] + \
    [f"faces/orl/s18/{k}.pgm" for k in (1, 2, 3, 4)] + \
    [f"faces/yale/subject11.{c}.png" for c in ("centerlight", "glasses", "happy", "leftlight")]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("assets/portrait"))
    a = ap.parse_args(argv)
    for f in FILES:
        (a.out / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(a.data / f, a.out / f)
    # s1's composed voice is FSDD speaker george: one clip not used for the voice prototype.
    _, query = enrol_and_query_clips(list_voice_clips(a.data)["fsdd:george"])
    dst = a.out / "fsdd" / "recordings" / query[0].path.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(query[0].path, dst)
    (a.out / "examples").mkdir(exist_ok=True)
    img = Image.open(a.data / "faces/orl/s1/6.pgm").convert("L").resize((184, 224))
    img.filter(ImageFilter.GaussianBlur(6)).save(a.out / "examples" / "s1_blurred.png")


if __name__ == "__main__":
    main()
