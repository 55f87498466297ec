"""Build the second demo collection, everyday things:
``python -m tools.make_everyday_demo [--data ../shared/data]``.

Caltech-101 photos (CC BY 4.0) of ``collections/everyday``: the first ``PER_CLASS`` of each class folder in
sorted order (no picking by eye), copied into ``assets/retrieval_everyday/collection/<class>/``; the spoken
example query ``queries/starfish_spoken.wav`` is synthetic speech (flite voice rms, never used in training).
The index is then built with ``mbm.scenarios.retrieval.index`` into ``assets/retrieval_everyday/index.npz``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import soundfile as sf

from mbm.paths import ASSETS, ROOT
from mbm.scenarios.retrieval.data import synthesize

EVERYDAY_ASSETS = ASSETS / "retrieval_everyday"
EVERYDAY_INDEX = EVERYDAY_ASSETS / "index.npz"
PER_CLASS = 3
SPOKEN_EXAMPLE = ("a starfish", ("flite", "rms"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args(argv)
    src = args.data / "collections" / "everyday"
    if not src.is_dir():
        raise SystemExit(f"error: {src} is not a folder")
    coll, queries = EVERYDAY_ASSETS / "collection", EVERYDAY_ASSETS / "queries"
    shutil.rmtree(coll, ignore_errors=True)
    queries.mkdir(parents=True, exist_ok=True)
    credits = []
    for d in sorted(p for p in src.iterdir() if p.is_dir()):
        (coll / d.name).mkdir(parents=True)
        for p in sorted(f for f in d.iterdir() if f.suffix.lower() == ".jpg")[:PER_CLASS]:
            shutil.copyfile(p, coll / d.name / p.name)
            credits.append(f"- `collection/{d.name}/{p.name}`: Caltech-101 `{d.name}/` "
                           f"(`../shared/data/collections/everyday/{d.name}/{p.name}`)")
    text, voice = SPOKEN_EXAMPLE
    sf.write(queries / "starfish_spoken.wav", synthesize(text, voice), 16000)
    (EVERYDAY_ASSETS / "CREDITS.md").write_text(
        "# Credits for the everyday demo collection\n\n"
        "Photos from **Caltech-101** (L. Fei-Fei, R. Fergus and P. Perona, \"Learning generative visual models from "
        "few training examples: an incremental Bayesian approach tested on 101 object categories\", CVPR 2004 "
        "Workshop on Generative-Model Based Vision; data set by the California Institute of Technology, "
        "licensed **CC BY 4.0**, https://data.caltech.edu/records/mzrjq-6wc02), as copied into "
        "`../shared/data/collections/everyday/`: the first "
        f"{PER_CLASS} of each class in sorted order, chosen by `python -m tools.make_everyday_demo`. "
        "Unchanged copies.\n\n" + "\n".join(credits) + "\n\n"
        f"- `queries/starfish_spoken.wav`: synthetic speech of \"{text}\" (flite voice {voice[1]}; flite's "
        "licence is BSD-like).\n", encoding="utf-8")
    from mbm.scenarios.retrieval.index_build import build

    build(coll, EVERYDAY_INDEX, progress=False, resumable=False)
    print(f"wrote {EVERYDAY_INDEX}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
