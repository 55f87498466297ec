"""Fusion runs on cached encoder tokens, the held-out typed commands, and the statistics the
evaluation shares (Spearman, accuracy, confusion): what ``evaluate``, ``faithfulness`` and
``mbm.scenarios.voice_control.maps`` all build on.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from mbm.encoders import Tokens
from mbm.preprocess import InputError, encode_text
from mbm.scenarios.voice_control.spec import action_probs, make_typed_command

TEXT_SEED = 0  # the typed commands of the evaluation

# --- tokens and fusion on cached tokens -------------------------------------------------------------

@torch.inference_mode()
def encode(model, modality: str, x: torch.Tensor, batch_size: int = 256) -> Tokens:
    """Run one encoder in batches -> Tokens (N, T, D) + mask (N, T)."""
    parts = [model.encoders[modality](x[s:s + batch_size]) for s in range(0, x.shape[0], batch_size)]
    return Tokens(torch.cat([p.tokens for p in parts]), torch.cat([p.mask for p in parts]))


@torch.inference_mode()
def fuse(model, tokens: dict[str, Tokens], rows: dict[str, torch.Tensor], index: torch.Tensor,
         subset: tuple[str, ...], batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fusion + heads for the samples given by ``rows[m]`` (row of each sample in tokens[m]), modalities ``subset``.

    Returns:
        ``(p_action (N, A), modality_weights (N, M), p_device_word)`` where the last is
        a tuple (p_device (N, n_devices), p_word (N, n_words)).
    """
    n = next(iter(rows.values())).shape[0]
    pa, mw, pd, pw = [], [], [], []
    for s in range(0, n, batch_size):
        sel = {m: tokens[m].rows(rows[m][s:s + batch_size]) for m in subset}
        f = model.fuse(sel)
        logits = model.forward_head(f.fused)
        p_dev, p_word = logits["device"].softmax(-1), logits["word"].softmax(-1)
        pa.append(action_probs(p_dev, p_word, index))
        mw.append(f.modality_weights)
        pd.append(p_dev)
        pw.append(p_word)
    return torch.cat(pa), torch.cat(mw), (torch.cat(pd), torch.cat(pw))


@torch.inference_mode()
def pair_outputs(model, tok: dict[str, Tokens], ci: torch.Tensor, pj: torch.Tensor,
                 batch_size: int = 512) -> dict[str, dict[str, torch.Tensor]]:
    """Head probabilities and modality weights for every (clip ci, photo pj) pair from cached tokens.

    Returns ``{"": audio + image, "_audio_only": ..., "_image_only": ...}``, each
    ``{"device": (N, 7), "word": (N, 20), "modality_weights": (N, 3)}``. A single-modality
    run depends on one input only, so it runs once per clip / photo and is then indexed.
    """
    out: dict[str, dict[str, torch.Tensor]] = {}
    for suffix, subset, rows in (("", ("audio", "image"), {"audio": ci, "image": pj}),
                                 ("_audio_only", ("audio",), {"audio": torch.arange(tok["audio"].tokens.shape[0])}),
                                 ("_image_only", ("image",), {"image": torch.arange(tok["image"].tokens.shape[0])})):
        parts: dict[str, list[torch.Tensor]] = {"device": [], "word": [], "modality_weights": []}
        n = next(iter(rows.values())).shape[0]
        for s in range(0, n, batch_size):
            sel = {m: tok[m].rows(r[s:s + batch_size]) for m, r in rows.items()}
            f = model.fuse(sel)
            for head, logits in model.forward_head(f.fused).items():
                parts[head].append(logits.softmax(-1))
            parts["modality_weights"].append(f.modality_weights)
        res = {k: torch.cat(v) for k, v in parts.items()}
        if suffix:  # per clip / photo -> per pair
            res = {k: v[ci if suffix == "_audio_only" else pj] for k, v in res.items()}
        out[suffix] = res
    return out


# --- inputs -----------------------------------------------------------------------------------------

TEXT_NAMES = {(True, True): "both", (True, False): "device", (False, True): "word"}


def typed_commands(pairs_truth: list[tuple[str, str]], vocab: list[str], text_cfg, seed: int = TEXT_SEED):
    """A held-out-phrasing typed command per (device, word).

    Returns:
        ``(texts, ids (N, L), usable (N,) bool, names)``; ``names[k]`` says what text k names:
        ``"device"``, ``"word"`` or ``"both"``.
    """
    rng = random.Random(seed)
    texts, encoded, named = [], [], []
    for device, word in pairs_truth:
        names = rng.choice(((True, True), (True, False), (False, True)))
        cmd = make_typed_command(rng, device, word, names_device=names[0], names_word=names[1], held_out=True)
        texts.append(cmd.text)
        named.append(TEXT_NAMES[names])
        try:
            encoded.append(encode_text(cmd.text, vocab, text_cfg))
        except InputError:
            encoded.append(None)
    return texts, _pad_ids(encoded), torch.tensor([e is not None for e in encoded]), named


def _pad_ids(encoded) -> torch.Tensor:
    length = max([len(e.ids) for e in encoded if e is not None] or [1])
    ids = torch.zeros(len(encoded), length, dtype=torch.long)
    for k, e in enumerate(encoded):
        if e is not None:
            ids[k, :len(e.ids)] = e.ids
        else:
            ids[k, 0] = 1  # <unk> placeholder, never used (the sample is not a triple)
    return ids


def _accuracy(p: torch.Tensor, truth: torch.Tensor) -> float:
    return round(float((p.argmax(1) == truth).float().mean()), 4) if len(truth) else float("nan")


def _confusion(pred: torch.Tensor, truth: torch.Tensor, labels) -> dict:
    m = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(m, (truth.numpy(), pred.numpy()), 1)
    return {"labels": list(labels), "matrix": m.tolist()}
