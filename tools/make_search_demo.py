"""Build the shipped demo collection: ``python -m tools.make_search_demo [--data ../shared/data]``.

Held-out photos only (``mbm.scenarios.retrieval.data.held_out``), and only from sources that may be shipped
(``cal_ tin_ off_ cur_ dd_``): five per class, first in sorted order; a few get typed captions, two
get synthetic voice notes (flite voice awb, never used in training). The queries folder holds an
Office-Caltech monitor photo not in the collection and a synthetic spoken "fan" (flite rms). The index
is then built with ``mbm.scenarios.retrieval.index`` into ``assets/retrieval/demo_index.npz``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import soundfile as sf

from mbm.paths import RETRIEVAL_ASSETS, RETRIEVAL_DEMO_INDEX, ROOT
from mbm.scenarios.retrieval.data import device_photos, held_out, synthesize

SHIPPABLE = ("cal_", "tin_", "off_", "cur_", "dd_")
PER_CLASS = 5
# The example query photo: held out, shippable, not in the collection; a colourful monitor picked by
# eye, so that it + "a door" ranks the painted door first (4th for the photo alone and the text alone).
QUERY_PHOTO = "devices/tv/off_caltech10_77e2bf508b.jpg"
CAPTIONS = {0: "white curtains in a bright room", 1: "a wooden front door"}
VOICE_NOTES = {2: "a ceiling fan in the living room"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args(argv)
    coll = RETRIEVAL_ASSETS / "collection"
    queries = RETRIEVAL_ASSETS / "queries"
    shutil.rmtree(coll, ignore_errors=True)
    coll.mkdir(parents=True)
    queries.mkdir(parents=True, exist_ok=True)
    credits = []
    by_class: dict[str, list[Path]] = {}
    for p, c in device_photos(args.data):
        if p.name.startswith(SHIPPABLE) and held_out(p.name):
            by_class.setdefault(c, []).append(p)
    for ci, (c, paths) in enumerate(sorted(by_class.items())):
        # Caltech-101 first for lamp and fan (CC BY 4.0, and photos of whole objects)
        chosen = sorted(paths, key=lambda p: (not p.name.startswith("cal_"), p.name))[:PER_CLASS]
        for k, p in enumerate(chosen):
            name = f"{c}_{k + 1}{p.suffix.lower()}"
            shutil.copyfile(p, coll / name)
            credits.append(f"- `collection/{name}`: `devices/{c}/{p.name}`")
            if k == 0 and ci in CAPTIONS:
                (coll / f"{c}_{k + 1}.txt").write_text(CAPTIONS[ci] + "\n", encoding="utf-8")
            if k == 0 and ci in VOICE_NOTES:
                sf.write(coll / f"{c}_{k + 1}.wav", synthesize(VOICE_NOTES[ci], ("flite", "awb")), 16000)
    shutil.copyfile(args.data / QUERY_PHOTO, queries / "monitor.jpg")
    credits.append(f"- `queries/monitor.jpg`: `{QUERY_PHOTO}`")
    sf.write(queries / "fan_spoken.wav", synthesize("fan", ("flite", "rms")), 16000)
    (RETRIEVAL_ASSETS / "CREDITS.md").write_text(
        "# Credits for the retrieval demo collection\n\n"
        "Held-out photos (never used to train `checkpoints/retrieval.pt`), chosen by "
        "`python -m tools.make_search_demo`: the first five per class in sorted order among the sources "
        "that may be shipped (Caltech-101 first for lamp and fan).\n\n" + "\n".join(credits) + "\n\n"
        "- Device photos by file-name prefix: `tin_` Tiny ImageNet and `off_` Office-Caltech (ImageNet / "
        "Caltech-256 derived, non-commercial research and education), `cal_` Caltech-101 (CC BY 4.0), "
        "`cur_` Roboflow curtain set (CC BY 4.0), `dd_` DoorDetect (Open Images photos, CC BY 2.0).\n"
        "- Captions (`.txt`) were written for this demo; the voice notes (`.wav`) and `queries/fan_spoken.wav` "
        "are synthetic speech (flite voices awb and rms; flite's licence is BSD-like).\n", encoding="utf-8")
    from mbm.scenarios.retrieval.index_build import build

    build(coll, RETRIEVAL_DEMO_INDEX, progress=False)
    print(f"wrote {coll} ({len(list(coll.glob('*')))} files) and {RETRIEVAL_DEMO_INDEX}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
