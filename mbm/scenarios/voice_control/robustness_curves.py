"""Robustness curves (the Evaluation tab's): action accuracy against corruption level 0, 0.25, 0.5, 0.75, 1, one
modality corrupted at a time, seeded: audio noise (``add_noise`` at ``snr_for_level``), image blur and occlusion
(``mbm.scenarios.voice_control.robustness``) with audio + image as inputs; text typos (``typo_text``) with all
three. The fusion and the heads run on cached tokens (``mbm.scenarios.voice_control.cached_runs``)."""

from __future__ import annotations

import torch

from mbm.agreement import NOISE_SEED
from mbm.config import MODALITIES
from mbm.data.augment import add_noise, snr_for_level
from mbm.encoders import Tokens
from mbm.preprocess import InputError, encode_text, log_mel, normalise_pixels
from mbm.scenarios.voice_control.cached_runs import _accuracy, _pad_ids, encode, fuse
from mbm.scenarios.voice_control.robustness import blur_image, occlude_image, typo_text

LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


def robustness_curves(model, ckpt, tok, waves, shown, texts, rows, truth, index) -> dict:
    """Action accuracy against corruption level per modality (see the module's description).

    Args:
        tok: clean Tokens per modality; rows: modality -> row of each sample in tok (text: into tok["text"]);
        texts: the typed command of each sample; waves / shown: every clip's window / photo's crop.
    """
    cfg = ckpt.config
    clip_ids, clip_rows = rows["audio"].unique(return_inverse=True)  # encode each needed clip once
    photo_ids, photo_rows = rows["image"].unique(return_inverse=True)

    def acc(modality: str, new_tokens: Tokens, new_rows: torch.Tensor, subset) -> float:
        p, _, _ = fuse(model, {**tok, modality: new_tokens}, {**rows, modality: new_rows}, index, subset)
        return _accuracy(p, truth)

    curves: dict = {"levels": list(LEVELS), "n": len(truth)}
    clean_ai = acc("audio", tok["audio"], rows["audio"], ("audio", "image"))
    audio, blur, occl, typos = [clean_ai], [clean_ai], [clean_ai], [acc("text", tok["text"], rows["text"], MODALITIES)]
    for lv in LEVELS[1:]:
        g = torch.Generator().manual_seed(NOISE_SEED)
        noisy = add_noise(waves[clip_ids], torch.full((len(clip_ids),), snr_for_level(lv)), g)  # (n, samples)
        audio.append(acc("audio", encode(model, "audio", log_mel(noisy, cfg.audio)), clip_rows, ("audio", "image")))
        for curve, fn in ((blur, lambda im, c, lv=lv: blur_image(im, lv)),
                          (occl, lambda im, c, lv=lv: occlude_image(im, lv, seed=c))):
            imgs = torch.stack([torch.from_numpy(fn(shown[c].numpy(), int(c))) for c in photo_ids])
            px = normalise_pixels(imgs.permute(0, 3, 1, 2).float())  # (n, 3, S, S)
            curve.append(acc("image", encode(model, "image", px), photo_rows, ("audio", "image")))
        enc = []
        for k, t in enumerate(texts):
            try:
                enc.append(encode_text(typo_text(t, lv, seed=k), ckpt.vocab, cfg.text))
            except InputError:
                enc.append(None)  # no word left that the model knows: the text says nothing
        text_tok = encode(model, "text", _pad_ids(enc))
        gone = torch.tensor([e is None for e in enc])
        text_tok = text_tok.keep_rows(~gone)
        typos.append(acc("text", text_tok, torch.arange(len(texts)), MODALITIES))
    curves["audio_noise"] = {"accuracy": audio, "inputs": "audio+image",
                             "snr_db": [None if lv == 0 else 40.0 - 50.0 * lv for lv in LEVELS]}
    curves["image_blur"] = {"accuracy": blur, "inputs": "audio+image"}
    curves["image_occlusion"] = {"accuracy": occl, "inputs": "audio+image"}
    curves["text_typos"] = {"accuracy": typos, "inputs": "audio+image+text"}
    return curves
