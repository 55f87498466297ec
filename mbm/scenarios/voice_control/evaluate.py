"""Evaluate a shipped checkpoint on any folder laid out like ``../shared/data``.

    python -m mbm.evaluate --scenario voice_control --data DIR --json
    python -m mbm.evaluate --scenario voice_control --data ../shared/data --split heldout --json

``--split all`` (default) scores every file in DIR (an unseen copy); ``--split
heldout`` scores only the speakers and photos that training held out of DIR.
Prints one JSON object on stdout (with ``--json``) or a readable summary.

The voice-control JSON also holds the faithfulness metrics of ``mbm.scenarios.voice_control.faithfulness``
(``weight_effect_spearman``, ``noised_weight_drop``, ``late_fusion_action_accuracy``,
accuracy per modality subset, confusion matrices; definitions in that module), the deletion check of
the drawn maps (``map_deletion_ratio``, ``mbm.scenarios.voice_control.maps``) and where the image map falls
(``image_map_mass_on_device`` and the rest, ``mbm.scenarios.voice_control.map_mass``).
``--results FILE`` also writes the small file the app's Evaluation tab reads,
robustness curves included:

    python -m mbm.evaluate --scenario voice_control --data ../shared/data --split heldout --json \
        --results assets/voice_control/eval_results.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mbm.checkpoint import Checkpoint, load_checkpoint
from mbm.cli import print_result
from mbm.data.readers import DevicePhoto, SpeechClip, list_device_photos, list_speech_clips, split_photos, split_speech
from mbm.paths import VOICE_CONTROL_CHECKPOINT
from mbm.scenarios.voice_control.eval_inputs import (
    encode_clip_windows,
    encode_photo_crops,
    encode_photos,
    pair_clips_with_devices,
    run_model,
)
from mbm.scenarios.voice_control.spec import DEVICES, WORDS, action_name, action_probs

DEFAULT_CHECKPOINTS = {"voice_control": VOICE_CONTROL_CHECKPOINT}


def evaluate_voice_control(ckpt: Checkpoint, clips: list[SpeechClip], photos: list[DevicePhoto],
                           faithfulness: bool = True, curves: bool = False, data_dir: Path | None = None,
                           split: str = "heldout") -> dict:
    """Accuracy of words (audio only), devices (image only) and actions (audio + image and each alone).

    With ``faithfulness`` also the metrics of ``faithfulness`` (weight/effect Spearman, noised
    weight drop, late fusion, subsets, confusion matrices and, with ``curves``, robustness curves).
    """
    model = ckpt.build_model()
    cfg = ckpt.config
    index = torch.tensor(ckpt.extra["action_index"])
    actions = ckpt.extra["actions"]
    waves, mels, clips = encode_clip_windows(clips, cfg.audio)
    shown, pixels, photos = encode_photo_crops(photos, cfg.image)
    result: dict = {"n_clips": len(clips), "n_photos": len(photos)}

    if clips:
        word_probs = run_model(model, {"audio": mels})["word"]
        correct = (word_probs.argmax(1) == torch.tensor([WORDS.index(c.word) for c in clips])).numpy()
        result["word_accuracy_real"] = float(correct.mean())
        result["word_accuracy_by_source"] = accuracy_by_group(correct, [c.source for c in clips])
    if photos:
        device_probs = run_model(model, {"image": pixels})["device"]
        correct = (device_probs.argmax(1) == torch.tensor([DEVICES.index(p.device) for p in photos])).numpy()
        result["device_accuracy"] = float(correct.mean())
        result["device_accuracy_by_source"] = accuracy_by_group(correct, [p.source for p in photos])
        result["device_accuracy_by_class"] = accuracy_by_group(correct, [p.device for p in photos])
        from mbm.scenarios.voice_control.image_eval import rejection_metrics, uses_pretrained_images

        if uses_pretrained_images(model):  # "no device recognised" (mbm.scenarios.voice_control.image_eval)
            result.update(rejection_metrics(model, pixels, data_dir, split, cfg.image.size))
    if clips and photos:
        pairs = pair_clips_with_devices(clips, photos)
        ci = torch.tensor([i for i, _ in pairs])
        pj = torch.tensor([j for _, j in pairs])
        truth = [actions.index(action_name(photos[j].device, clips[i].word)) for i, j in pairs]
        truth = torch.tensor(truth)
        # each clip and photo is encoded once; fusion + heads run per pair on the cached tokens
        from mbm.scenarios.voice_control.cached_runs import encode, pair_outputs

        model.eval()
        tokens = {"audio": encode(model, "audio", mels), "image": encode(model, "image", pixels)}
        single = {}
        for suffix, out in pair_outputs(model, tokens, ci, pj).items():
            probs = action_probs(out["device"], out["word"], index)
            single[suffix] = probs
            result[f"action_accuracy{suffix}"] = float((probs.argmax(1) == truth).float().mean())
            if suffix == "":
                w = out["modality_weights"].mean(0)
                result["mean_modality_weights"] = {m: round(float(x), 4) for m, x in zip(model.modalities, w)}
        result["n_pairs"] = len(pairs)
        result.update(not_sure_threshold(torch.cat(list(single.values())), truth.repeat(len(single))))
        if faithfulness:
            from mbm.scenarios.voice_control.faithfulness import faithfulness_voice_control

            result.update(faithfulness_voice_control(model, ckpt, waves, mels, pixels, shown, clips, photos, pairs,
                                                     curves=curves, tokens=tokens,
                                                     single=(single["_audio_only"], single["_image_only"])))
            from mbm.scenarios.voice_control.maps import (  # are the drawn maps true? (mbm.scenarios.voice_control.maps)
                deletion_ratios,
                held_out_samples,
            )

            ratios = deletion_ratios(model, index, held_out_samples(ckpt, mels, pixels, clips, photos, pairs))
            result["map_deletion_ratio"] = ratios["occlusion"]  # the maps the app draws
            result["map_deletion_ratio_attention"] = ratios["attention"]
            result["map_deletion_n"] = ratios["n"]
            if data_dir is not None and uses_pretrained_images(model):  # where the image map falls (map_mass)
                from mbm.paths import VOICE_CONTROL_ASSETS
                from mbm.scenarios.voice_control.map_mass import map_mass_metrics
                from mbm.scenarios.voice_control.predictor import VoiceControlPredictor

                result.update(map_mass_metrics(VoiceControlPredictor(ckpt), data_dir, split, VOICE_CONTROL_ASSETS))
    return result


NOT_SURE_TARGET = 0.9  # answers at or above the threshold must be right this often (held-out)


def not_sure_threshold(probs: torch.Tensor, truth: torch.Tensor, target: float = NOT_SURE_TARGET) -> dict:
    """The lowest confidence (in steps of 0.05) above which held-out answers are right >= ``target``.

    ``probs`` (N, A) action probabilities of every prediction (fused and each input alone), ``truth``
    (N,). The app says "not sure" below it. Returns ``not_sure_below``, the accuracy and share of
    answers at or above it; 1.0 (always "not sure") if no threshold reaches the target.
    """
    confidence, predicted = probs.max(1)
    correct = (predicted == truth).float()
    for threshold in np.arange(0.05, 1.0, 0.05):
        sure = confidence >= threshold
        if sure.any() and float(correct[sure].mean()) >= target:
            return {"not_sure_below": round(float(threshold), 2),
                    "accuracy_when_sure": round(float(correct[sure].mean()), 4),
                    "share_sure": round(float(sure.float().mean()), 4)}
    return {"not_sure_below": 1.0, "accuracy_when_sure": None, "share_sure": 0.0}


def accuracy_by_group(correct: np.ndarray, groups: list[str]) -> dict:
    """``{group: {"accuracy", "n"}}`` of the right/wrong flags ``correct``, grouped by ``groups`` (one per flag)."""
    out = {}
    for g in sorted(set(groups)):
        sel = np.array([x == g for x in groups])
        out[g] = {"accuracy": round(float(correct[sel].mean()), 4), "n": int(sel.sum())}
    return out


def voice_control_data(data_dir: Path, split: str) -> tuple[list[SpeechClip], list[DevicePhoto]]:
    """The clips and photos of ``data_dir`` to score: all, or the held-out side of our split."""
    clips, photos = list_speech_clips(data_dir), list_device_photos(data_dir)
    if split == "heldout":
        clips, photos = split_speech(clips)[1], split_photos(photos)[1]
    elif split == "train":
        clips, photos = split_speech(clips)[0], split_photos(photos)[0]
    return clips, photos


RESULTS_KEYS = ("scenario", "split", "n_clips", "n_photos", "n_pairs", "n_triples", "action_accuracy",
                "action_accuracy_audio_only", "action_accuracy_image_only", "late_fusion_action_accuracy",
                "action_accuracy_with_text", "late_fusion_action_accuracy_with_text", "action_accuracy_by_subset",
                "word_accuracy_real", "device_accuracy", "weight_effect_spearman", "weight_effect_spearman_n",
                "weight_effect_spearman_by_text_names", "weight_effect_spearman_by_answer",
                "noised_weight_drop", "noised_weight_drop_by_modality", "noised_weight_drop_unseen_noise",
                "noised_weight_drop_unseen_noise_by_modality", "mean_modality_weights",
                "mean_modality_weights_with_text", "mean_drop_p_true_without", "confusion", "robustness",
                "map_deletion_ratio", "device_accuracy_kept_apart_sources",
                "device_accuracy_kept_apart_sources_by_source", "device_accuracy_unseen_source",
                "device_accuracy_unseen_source_by_class", "device_accuracy_zero_shot", "no_device_rejection",
                "no_device_rejection_everyday", "no_device_rejection_everyday_by_class",
                "no_device_rejection_not_devices", "device_false_rejection", "image_backbone", "not_sure_below",
                "accuracy_when_sure", "share_sure", "image_map_mass_on_device", "image_map_mass_chance",
                "image_map_mass_n", "image_map_mass_rejected", "image_map_mass_by_background",
                "image_map_mass_examples", "image_map_mass_examples_in_photo")


def write_results(result: dict, path: Path, argv: list[str]) -> None:
    """The small JSON file the app's Evaluation tab reads: the keys above plus the command that made it."""
    out = {k: result[k] for k in RESULTS_KEYS if k in result}
    out["command"] = "python -m mbm.evaluate " + " ".join(argv)
    out["created"] = time.strftime("%Y-%m-%d")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")


def main(argv: list[str]) -> None:
    """``python -m mbm.evaluate --scenario voice_control --data DIR [--json] ...``."""
    parser = argparse.ArgumentParser(description="Evaluate an mbm checkpoint on a data folder.")
    parser.add_argument("--scenario", required=True, choices=sorted(DEFAULT_CHECKPOINTS))
    parser.add_argument("--data", type=Path, required=True, help="folder laid out like ../shared/data")
    parser.add_argument("--checkpoint", type=Path, help="default: the shipped checkpoint of the scenario")
    parser.add_argument("--split", choices=("all", "heldout", "train"), default="all",
                        help="all files (an unseen copy), or our held-out / training side of DIR")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--results", type=Path, help="also write the app's small results file (e.g. "
                        "assets/voice_control/eval_results.json: subsets, confusion, late fusion, curves)")
    parser.add_argument("--no-faithfulness", action="store_true",
                        help="skip the faithfulness metrics, subsets, confusion matrices and curves")
    parser.add_argument("--curves", action="store_true",
                        help="also the robustness curves (always on with --results; adds ~30 s)")
    parser.add_argument("--evidence-gain", type=float, metavar="G",
                        help="evaluate with this FusionConfig.evidence_gain instead of the checkpoint's own")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.data.is_dir():
        parser.error(f"data folder not found: {args.data}")
    start = time.perf_counter()
    try:
        ckpt = load_checkpoint(args.checkpoint or DEFAULT_CHECKPOINTS[args.scenario], args.scenario)
        if args.evidence_gain is not None:
            ckpt.config.fusion.evidence_gain = args.evidence_gain
            ckpt.config.fusion.validate()
    except ValueError as e:
        parser.error(str(e))
    clips, photos = voice_control_data(args.data, args.split)
    result = evaluate_voice_control(ckpt, clips, photos, faithfulness=not args.no_faithfulness,
                                    curves=args.curves or args.results is not None, data_dir=args.data,
                                    split=args.split)
    if ckpt.config.encoder.image_backbone != "cnn":  # the source-shortcut test on all of DIR's photos
        from mbm.scenarios.voice_control.image_eval import kept_apart_metrics, unseen_source_metrics

        pixels, every = encode_photos(list_device_photos(args.data), ckpt.config.image)
        result.update(kept_apart_metrics(ckpt.build_model().eval(), every, pixels))
        result.update(unseen_source_metrics(every, pixels))
    backbone = ckpt.extra.get("image_backbone") or {}
    result["image_backbone"] = {"name": backbone.get("name", ckpt.config.encoder.image_backbone),
                                "weights": backbone.get("weights"), "image_size": ckpt.config.image.size}
    result.update(scenario=args.scenario, split=args.split, seconds=round(time.perf_counter() - start, 1))
    if args.results:
        write_results(result, args.results, argv)
    print_result(result, args.json)
