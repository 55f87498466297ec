"""Build the demo examples in ``assets/voice_control/`` from a data folder.

    python -m tools.make_voice_control_assets --data ../shared/data

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
from mbm.paths import VOICE_CONTROL_ASSETS as ASSETS

# The demo clips and photos are never trained on: clips from the HELD-OUT speakers; for each
# device a photo from a kept-apart source (KEPT_APART_SOURCES: a source the image side never
# trained on) where it has one we may show, else from the held-out photos we may show. For each
# needed word the clearest recording, for each device the first photo in sorted order, that the
# given checkpoint reads correctly (word from the audio alone, device from the image alone) with
# confidence >= MIN_CONFIDENCE (a photo: MIN_PHOTO_CONFIDENCE). They show fusion at work; they are
# not a measure of accuracy (that is `python -m mbm.evaluate`, with
# `device_accuracy_kept_apart_sources` per source).
WORDS_NEEDED = {"up": "up.wav", "down": "down.wav", "on": "on.wav", "off": "off.wav", "five": "five.wav"}
DEVICES_NEEDED = ("blinds", "door", "fan", "heater", "lamp", "music_player", "tv")
MIN_CONFIDENCE = 0.5
MIN_PHOTO_CONFIDENCE = 0.8  # a photo read at 0.5 leaves its example under the "not sure" line
# Photo sources whose licences let the demo show their photos (the shop and blog photos state none)
SHOWABLE_SOURCES = ("cal", "cur", "dd", "imn", "off", "tin")


def pick_examples(data: Path, checkpoint: Path | None) -> tuple[dict[str, Path], dict[str, Path]]:
    """(asset name -> held-out clip, asset name -> kept-apart or held-out photo) that the checkpoint
    reads right."""
    from mbm.data.readers import list_device_photos, list_speech_clips, split_photos, split_speech
    from mbm.scenarios.voice_control.data import kept_apart
    from mbm.scenarios.voice_control.predictor import VoiceControlPredictor

    predictor = VoiceControlPredictor.from_checkpoint(checkpoint)
    held_clips = split_speech(list_speech_clips(data))[1]
    every = list_device_photos(data)
    held_photos, unseen_source = split_photos(every)[1], kept_apart(every)[1]
    clips, photos = {}, {}
    for word, name in WORDS_NEEDED.items():
        # The clearest Speech Commands (crowd) recording of the word: the microphone path of the
        # browser test re-encodes it, so a borderline clip would test the model, not the path.
        scored = []
        for clip in sorted((c for c in held_clips if c.word == word and c.source == "speech_commands"),
                           key=lambda c: str(c.path)):
            heard = predictor.predict(audio=str(clip.path)).heard
            if heard[0] == word and heard[1] >= MIN_CONFIDENCE:
                scored.append((-heard[1], str(clip.path), clip.path))
        if not scored:
            raise SystemExit(f"no held-out recording of '{word}' is heard correctly by the checkpoint")
        clips[name] = min(scored)[2]
    for device in DEVICES_NEEDED:
        pool = ([p for p in unseen_source if p.device == device and p.source in SHOWABLE_SOURCES]
                or [p for p in held_photos if p.device == device and p.source in SHOWABLE_SOURCES])
        for photo in sorted(pool, key=lambda p: str(p.path)):
            sees = predictor.predict(image=str(photo.path)).sees
            if sees[0] == device and sees[1] >= MIN_PHOTO_CONFIDENCE:
                photos[f"{device}.jpg"] = photo.path
                break
        else:
            raise SystemExit(f"no held-out photo of '{device}' is recognised by the checkpoint")
    return clips, photos


# Each example: inputs, the action the shipped model must predict, and what it shows.
EXAMPLES = [
    {"audio": "up.wav", "image": "lamp.jpg", "text": None, "expect": "lamp → brighter",
     "caption": "'up' + a lamp → brighter"},
    {"audio": "up.wav", "image": "music_player.jpg", "text": None, "expect": "music_player → volume up",
     "caption": "the same 'up' + a music player → volume up"},
    {"audio": "up.wav", "image": "blinds.jpg", "text": None, "expect": "blinds → raise",
     "caption": "the same 'up' + blinds → raise"},
    {"audio": "on.wav", "image": None, "text": "the fan", "expect": "fan → turn on",
     "caption": "'on' + typed 'the fan' instead of a photo → turn on"},
    {"audio": "off_noisy.wav", "image": "door.jpg", "text": None, "expect": "door → close",
     "caption": "a noisy 'off' + a door → close"},
    {"audio": "five.wav", "image": "tv.jpg", "text": None, "expect": "tv → channel 5",
     "caption": "'five' + a TV → channel 5"},
    {"audio": "down.wav", "image": "heater.jpg", "text": None, "expect": "heater → cooler",
     "caption": "'down' + a heater → cooler"},
    {"audio": None, "image": None, "text": "open the blinds", "expect": "blinds → open",
     "caption": "text alone: 'open the blinds' → open"},
]

CREDITS = """# Credits for the voice-control examples

Real recordings from the HELD-OUT speakers of the project's split, and photos the image side never
trained on: from a source kept out of its training altogether where the device has one whose
licence lets us show it (`cal_` Caltech-101: fan, lamp; `imn_` Imagenette: music player), else
from the held-out photos. Chosen by `python -m tools.make_voice_control_assets`: for each
word / device, the clearest recording / the first photo (sorted) that the shipped checkpoint reads
correctly on its own. They show fusion at work; accuracy is measured by `python -m mbm.evaluate`,
not by these (per kept-apart source: `device_accuracy_kept_apart_sources_by_source`).

{files}

- Speech Commands: CC BY 4.0, Pete Warden, "Speech Commands: A Dataset for Limited-Vocabulary
  Speech Recognition", 2018.
- Free Spoken Digit Dataset: CC BY-SA 4.0, Z. Jackson et al.
- Device photos by file-name prefix: `tin_` Tiny ImageNet and `off_` Office-Caltech (ImageNet /
  Caltech-256 derived, non-commercial research and education), `cal_` Caltech-101 (CC BY 4.0),
  `cur_` Roboflow curtain set (CC BY 4.0), `dd_` DoorDetect (Open Images photos, CC BY 2.0).
- `imn_` Imagenette (photos from ImageNet, whose terms allow non-commercial research and
  education), as collected from thunderInfy/imagenette @ b850f030ff07.

`off_noisy.wav` is `off.wav` with coloured noise added at {snr} dB SNR (seed 0).
`mic_up.wav` is `up.wav` padded with silence to 3 s, fed to Chromium as a fake microphone in the
browser test.
"""

NOISY_SNR_DB = 0.0


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, help="default: the shipped voice-control checkpoint")
    parser.add_argument("--out", type=Path, default=ASSETS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    clips, photos = pick_examples(args.data, args.checkpoint)
    for name, src in {**clips, **photos}.items():
        shutil.copyfile(src, args.out / name)
    off, sr = sf.read(args.out / "off.wav", dtype="float32")
    g = torch.Generator().manual_seed(0)
    noisy = add_noise(torch.from_numpy(off)[None], torch.tensor([NOISY_SNR_DB]), g)[0].numpy()
    sf.write(args.out / "off_noisy.wav", np.clip(noisy, -1, 1), sr, subtype="PCM_16")
    up, sr = sf.read(args.out / "up.wav", dtype="float32")
    mic = np.zeros(3 * sr, dtype=np.float32)
    mic[sr // 2:sr // 2 + len(up)] = up
    sf.write(args.out / "mic_up.wav", mic, sr, subtype="PCM_16")
    (args.out / "examples.json").write_text(json.dumps(EXAMPLES, indent=1, ensure_ascii=False) + "\n")
    files = "\n".join(f"- `{name}`: `{Path(src).relative_to(args.data)}`" for name, src in {**clips, **photos}.items())
    (args.out / "CREDITS.md").write_text(CREDITS.format(files=files, snr=NOISY_SNR_DB))
    print(f"wrote {len(EXAMPLES)} examples to {args.out}")


if __name__ == "__main__":
    main()
