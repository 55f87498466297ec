"""The evidence gain by its rule (the largest weight_effect_spearman on the TRAINING split; docs/voice_control.md,
"Measured faithfulness"; the rounds: docs/history.md),
for the shipped checkpoint, on a quarter of the training clips and half of the training photos (issue #17 log, stop 25).

    PYTHONPATH=. python tools/experiments/real_photos_scripts/gain_rule.py ../shared/data 0,1,2,3,4

The same faithfulness metrics as ``python -m mbm.evaluate --split train --evidence-gain G``, ~25 s a gain.
"""

import json
import sys
from pathlib import Path

import torch

from mbm.checkpoint import load_checkpoint
from mbm.scenarios.voice_control.cached_runs import encode
from mbm.scenarios.voice_control.eval_inputs import encode_clip_windows, encode_photo_crops, pair_clips_with_devices
from mbm.scenarios.voice_control.evaluate import voice_control_data
from mbm.scenarios.voice_control.faithfulness import faithfulness_voice_control

torch.set_num_threads(2)
ckpt = load_checkpoint("checkpoints/voice_control.pt", "voice_control")
clips, photos = voice_control_data(Path(sys.argv[1]), "train")
waves, mels, clips = encode_clip_windows(clips[::4], ckpt.config.audio)
shown, pixels, photos = encode_photo_crops(photos[::2], ckpt.config.image)
pairs = pair_clips_with_devices(clips, photos)
for gain in (float(g) for g in sys.argv[2].split(",")):
    ckpt.config.fusion.evidence_gain = gain
    model = ckpt.build_model().eval()
    tokens = {"audio": encode(model, "audio", mels), "image": encode(model, "image", pixels)}
    r = faithfulness_voice_control(model, ckpt, waves, mels, pixels, shown, clips, photos, pairs, curves=False,
                                   tokens=tokens)
    print(json.dumps({"gain": gain, "weight_effect_spearman": r["weight_effect_spearman"],
                      "by_text_names": {k: v["weight_effect_spearman"]
                                        for k, v in r["weight_effect_spearman_by_text_names"].items()},
                      "noised_weight_drop": r["noised_weight_drop"],
                      "action_accuracy_with_text": r["action_accuracy_with_text"]}))
