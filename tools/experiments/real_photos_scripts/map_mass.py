"""Image map mass on the device (issue 30, item 5; docs/voice_control.md "Where the image map falls").

    PYTHONPATH=. python tools/experiments/real_photos_scripts/map_mass.py --data ../shared/data --split heldout \\
        --results assets/voice_control/eval_results.json

Computes, for the shipped voice-control checkpoint, only the keys the image map change touches, the
same way ``python -m mbm.evaluate --scenario voice_control --split heldout --results ...`` does (13
minutes for everything; this takes about 5-8 on a busy 2-core machine): ``image_map_mass_*``
(:mod:`mbm.scenarios.voice_control.map_mass`: held-out device photos shrunk onto a background, the
drawn map's share of mass on the photo; and the shipped examples) and ``map_deletion_ratio`` (the
deletion check of the drawn maps on the evaluation's 60 held-out input sets, :mod:`mbm.scenarios.voice_control.maps`).
Prints them as JSON; with ``--results`` writes those keys into the results file, the others kept.

``--draws N`` (not with ``--results``) averages N random masks per input instead of 4, ``--no-mass``
skips the mass. ``--old-maps FILE`` first replaces ``mbm.scenarios.voice_control.maps``' image units and mask with those of another copy of
``mbm/scenarios/voice_control/maps.py`` (the numbers before the change: ``git show e979551:mbm/scenarios/voice_control/maps.py > /tmp/maps_old.py``).
"""

import argparse
import importlib.util
import json
import time
from pathlib import Path

import torch

from mbm.paths import VOICE_CONTROL_ASSETS, VOICE_CONTROL_CHECKPOINT
from mbm.scenarios.voice_control import maps
from mbm.scenarios.voice_control.eval_inputs import encode_clip_windows, encode_photo_crops, pair_clips_with_devices
from mbm.scenarios.voice_control.evaluate import voice_control_data
from mbm.scenarios.voice_control.map_mass import map_mass_metrics
from mbm.scenarios.voice_control.predictor import VoiceControlPredictor
from mbm.storage import add_to_results

KEYS = ("image_map_mass_on_device", "image_map_mass_chance", "image_map_mass_n", "image_map_mass_rejected",
        "image_map_mass_by_background", "image_map_mass_examples", "image_map_mass_examples_in_photo",
        "map_deletion_ratio")


def main() -> None:
    """Parse the arguments, measure, print, and update the results file if asked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--split", choices=("heldout", "train", "all"), default="heldout")
    parser.add_argument("--checkpoint", type=Path, default=VOICE_CONTROL_CHECKPOINT)
    parser.add_argument("--results", type=Path, help="update these keys in this results file")
    parser.add_argument("--old-maps", type=Path, help="another mbm/scenarios/voice_control/maps.py whose image units and mask to use")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--draws", type=int, help=f"random masks per input (default {maps.RANDOM_DRAWS}); with "
                        "more, the deletion ratio is a steadier estimate (not written to --results)")
    parser.add_argument("--no-mass", action="store_true", help="only the deletion check")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.old_maps:
        spec = importlib.util.spec_from_file_location("old_maps", args.old_maps)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        maps.IMAGE_UNITS, maps.mask_units = old.IMAGE_UNITS, old.mask_units
    start = time.perf_counter()
    if args.draws:
        if args.results:
            parser.error("--draws changes the evaluation's protocol: not with --results")
        maps.RANDOM_DRAWS = args.draws
    predictor = VoiceControlPredictor.from_checkpoint(args.checkpoint)
    out = {} if args.no_mass else map_mass_metrics(predictor, args.data, args.split, VOICE_CONTROL_ASSETS)
    ckpt, model = predictor.ckpt, predictor.model.eval()
    clips, photos = voice_control_data(args.data, args.split)
    _, mels, clips = encode_clip_windows(clips, ckpt.config.audio)
    _, pixels, photos = encode_photo_crops(photos, ckpt.config.image)
    samples = maps.held_out_samples(ckpt, mels, pixels, clips, photos, pair_clips_with_devices(clips, photos))
    ratios = maps.deletion_ratios(model, predictor.action_index, samples)
    out["map_deletion_ratio"] = ratios["occlusion"]  # the maps the app draws (as mbm.evaluate)
    out["map_deletion_ratio_attention"] = ratios["attention"]
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out, indent=1))
    if args.results:
        command = ("PYTHONPATH=. python tools/experiments/real_photos_scripts/map_mass.py --data "
                   f"{args.data} --split {args.split} --results {args.results}")
        add_to_results(args.results, {k: out[k] for k in KEYS if k in out} | {"map_mass_command": command})


if __name__ == "__main__":
    main()
