"""Build the demo examples in ``assets/voice_control/`` from a data folder.

    python -m mbm.data.make_assets --data ../shared/data

Copies a few real recordings of held-out speakers and device photos (credited
in ``assets/voice_control/CREDITS.md``), makes a noisy copy of one clip and a
longer microphone clip for the browser test, and writes ``examples.json``
(what the app's gr.Examples and the tests read).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from mbm.data.augment import add_noise

ASSETS = Path(__file__).resolve().parent.parent.parent / "assets" / "voice_control"

# (asset name, source path inside the data folder). Speakers 97f4c236 and jackson are held out of training.
CLIPS = {
    "up.wav": "speech_commands/up/97f4c236_nohash_2.wav",
    "down.wav": "speech_commands/down/97f4c236_nohash_2.wav",
    "on.wav": "speech_commands/on/97f4c236_nohash_2.wav",
    "off.wav": "speech_commands/off/b87bdb22_nohash_1.wav",
    "five.wav": "fsdd/recordings/5_jackson_0.wav",
}
PHOTOS = {f"{d}.jpg": f"devices_sample/{d}.jpg" for d in ("blinds", "door", "fan", "heater", "lamp", "music_player", "tv")}

# Each example: inputs, the action the shipped model must predict, and what it shows.
EXAMPLES = [
    {"audio": "up.wav", "image": "lamp.jpg", "text": None, "expect": "lamp → brighter",
     "caption": "'up' + a lamp → brighter"},
    {"audio": "up.wav", "image": "music_player.jpg", "text": None, "expect": "music_player → volume up",
     "caption": "the same 'up' + a music player → volume up"},
    {"audio": "up.wav", "image": "blinds.jpg", "text": None, "expect": "blinds → raise",
     "caption": "the same 'up' + blinds → raise"},
    {"audio": "on.wav", "image": None, "text": "the fan", "expect": "fan → turn on",
     "caption": "typed 'the fan' stands in for a missing photo"},
    {"audio": "off_noisy.wav", "image": "door.jpg", "text": None, "expect": "door → close",
     "caption": "a clear photo rescues a noisy recording"},
    {"audio": "five.wav", "image": "tv.jpg", "text": None, "expect": "tv → channel 5",
     "caption": "'five' + a TV → channel 5"},
    {"audio": "down.wav", "image": "heater.jpg", "text": None, "expect": "heater → cooler",
     "caption": "'down' + a heater → cooler"},
    {"audio": None, "image": None, "text": "dim the lamp", "expect": "lamp → dimmer",
     "caption": "text alone: 'dim the lamp'"},
]

CREDITS = """# Credits for the voice-control examples

Real recordings and photos copied from the project's training data sources
(speakers 97f4c236, b87bdb22 and jackson were held out of training):

- `up.wav`, `down.wav`, `on.wav`, `off.wav` (and `off_noisy.wav`, `mic_up.wav` made from them):
  Google Speech Commands v0.01, CC BY 4.0, Pete Warden, "Speech Commands: A Dataset for
  Limited-Vocabulary Speech Recognition", 2018. Files: {sc}.
- `five.wav`: Free Spoken Digit Dataset, CC BY-SA 4.0, Z. Jackson et al. File: {fsdd}.
- Photos `*.jpg`: the `devices_sample` set of the project's data: Tiny ImageNet and Office-Caltech
  (ImageNet / Caltech-256 derived, non-commercial research and education), Caltech-101 (CC BY 4.0),
  Roboflow curtain set (CC BY 4.0), DoorDetect (Open Images photos, CC BY 2.0).

`off_noisy.wav` is `off.wav` with coloured noise added at {snr} dB SNR (seed 0).
`mic_up.wav` is `up.wav` padded with silence to 3 s, fed to Chromium as a fake microphone in the
browser test.
"""

NOISY_SNR_DB = 0.0


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ASSETS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, src in {**CLIPS, **PHOTOS}.items():
        shutil.copyfile(args.data / src, args.out / name)
    off, sr = sf.read(args.out / "off.wav", dtype="float32")
    g = torch.Generator().manual_seed(0)
    noisy = add_noise(torch.from_numpy(off)[None], torch.tensor([NOISY_SNR_DB]), g)[0].numpy()
    sf.write(args.out / "off_noisy.wav", np.clip(noisy, -1, 1), sr, subtype="PCM_16")
    up, sr = sf.read(args.out / "up.wav", dtype="float32")
    mic = np.zeros(3 * sr, dtype=np.float32)
    mic[sr // 2:sr // 2 + len(up)] = up
    sf.write(args.out / "mic_up.wav", mic, sr, subtype="PCM_16")
    (args.out / "examples.json").write_text(json.dumps(EXAMPLES, indent=1, ensure_ascii=False) + "\n")
    sc = ", ".join(v for v in CLIPS.values() if v.startswith("speech_commands"))
    (args.out / "CREDITS.md").write_text(CREDITS.format(sc=sc, fsdd=CLIPS["five.wav"], snr=NOISY_SNR_DB))
    print(f"wrote {len(EXAMPLES)} examples to {args.out}")


if __name__ == "__main__":
    main()
