"""The Evaluation tab's figures and table, from the results file ``python -m mbm.evaluate --results`` writes.

Every number shown comes from that one file (``assets/voice_control/eval_results.json``), which the
README quotes too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mbm.figures import ON_COLOUR, ON_LIGHT
from mbm.viz import MODALITY_COLOURS

OCCLUSION_COLOUR = "#a23b72"  # plum: apart from blur's orange, readable on the light and the dark theme


def load_eval_results(path) -> dict | None:
    """The results JSON, or None when the file is missing (the app then says so)."""
    p = Path(path)
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def robustness_figure(results: dict) -> Figure | None:
    """Action accuracy against corruption level, one line per corruption; None without curves."""
    curves = (results or {}).get("robustness")
    if not curves:
        return None
    # Drawn near the size it is shown (about 500 px wide) so that its text reads at 11-13 px; the legend
    # below the axes. Blur and occlusion both change the photo: the same hue family would not tell them
    # apart, so occlusion gets its own colour, marker and dashes.
    fig = Figure(figsize=(5.2, 4.2), layout="constrained")
    ax = fig.subplots()
    styles = {"audio_noise": ("audio noise", MODALITY_COLOURS["audio"], "-", "o"),
              "image_blur": ("image blur", MODALITY_COLOURS["image"], "-", "o"),
              "image_occlusion": ("image occlusion", OCCLUSION_COLOUR, "--", "s"),
              "text_typos": ("text typos", MODALITY_COLOURS["text"], "-", "^")}
    for key, (label, colour, ls, marker) in styles.items():
        if key in curves:
            ax.plot(curves["levels"], curves[key]["accuracy"], marker=marker, color=colour, ls=ls, lw=2,
                    label=f"{label} ({curves[key].get('inputs', '')})")
    ax.set_xlabel("corruption level", fontsize=11)
    ax.set_ylabel("action accuracy", fontsize=11)
    ax.tick_params(labelsize=10)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize=10, frameon=False)
    ax.set_title(f"robustness (n = {curves.get('n', '?')})", fontsize=12)
    return fig


def confusion_figure(results: dict, which: str = "device") -> Figure | None:
    """Confusion matrix (rows = truth, columns = prediction, row-normalised colours, counts written)."""
    conf = ((results or {}).get("confusion") or {}).get(which)
    if not conf:
        return None
    m = np.asarray(conf["matrix"], dtype=float)
    labels = conf["labels"]
    rates = m / np.maximum(m.sum(1, keepdims=True), 1)
    labels = [label.replace("_", " ") for label in labels]
    # Drawn at the size it is shown (about 600 px wide), so that 10 pt labels stay legible.
    fig = Figure(figsize=(6.5, 6), layout="constrained")
    ax = fig.subplots()
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=10)
    ax.set_yticks(range(len(labels)), labels, fontsize=10)
    ax.set_xlabel("predicted", fontsize=11)
    ax.set_ylabel("true", fontsize=11)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if m[i, j]:
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=9 if len(labels) < 12 else 7,
                        color="white" if rates[i, j] > 0.5 else ON_LIGHT, gid=ON_COLOUR)
    ax.set_title(f"{which} from {'the photo' if which == 'device' else 'speech'} alone: truth × prediction",
                 fontsize=12)
    return fig


def word_accuracy_split(results: dict) -> dict | None:
    """The word from real speech alone, all clips and apart: the ten digits and the ten command words,
    from the word confusion matrix: ``{"all" | "digits" | "commands": (accuracy, clips), "fewest":
    (word, clips)}``; None without the matrix. The headline word accuracy is mostly digits (hundreds of
    clips against a few dozen command words), so it says little about 'up' or 'off' alone."""
    from mbm.data.labels import DIGITS

    conf = ((results or {}).get("confusion") or {}).get("word")
    if not conf:
        return None
    m, labels = np.asarray(conf["matrix"], dtype=float), list(conf["labels"])
    out = {}
    for name, keep in (("all", labels), ("digits", [w for w in labels if w in DIGITS]),
                       ("commands", [w for w in labels if w not in DIGITS])):
        rows = [labels.index(w) for w in keep]
        n = float(m[rows].sum())
        out[name] = (float(sum(m[i, i] for i in rows)) / n if n else None, int(n))
    commands = [(w, int(m[labels.index(w)].sum())) for w in labels if w not in DIGITS]
    out["fewest"] = min(commands, key=lambda x: x[1]) if commands else None
    return out


def accuracy_table(results: dict) -> list[list]:
    """Rows ``[what, value]`` for a gr.Dataframe, in plain words, each saying which inputs it counts.

    The fusion rows are over every held-out audio + photo pair; the "each subset" rows are over the
    smaller set of held-out (clip, photo, typed command) triples, which is why "audio + photo"
    appears twice with different values.
    """
    r = results or {}
    pairs, triples = r.get("n_pairs", "?"), r.get("n_triples", "?")
    rows = [[f"our fusion: speech + photo ({pairs} pairs)", r.get("action_accuracy")],
            ["late fusion: speech + photo (the two alone, averaged)", r.get("late_fusion_action_accuracy")],
            [f"our fusion: speech + photo + typed text ({triples} sets)", r.get("action_accuracy_with_text")],
            ["late fusion: all three (averaged)", r.get("late_fusion_action_accuracy_with_text")]]
    names = {"audio": "speech", "image": "photo", "text": "text"}
    rows += [[f"on the {triples} sets, " + " + ".join(names.get(m, m) for m in k.split("+")) + " only", v]
             for k, v in (r.get("action_accuracy_by_subset") or {}).items()]
    words = word_accuracy_split(r)
    if words:  # the headline word accuracy is mostly digits: the command words apart
        few = f"; '{words['fewest'][0]}' has {words['fewest'][1]}" if words["fewest"] else ""
        rows += [[f"word from real speech alone ({r.get('n_clips', '?')} clips, mostly digits)",
                  r.get("word_accuracy_real")],
                 [f"… the ten digits only ({words['digits'][1]} clips of the word confusion below)",
                  words["digits"][0]],
                 [f"… the ten command words only ({words['commands'][1]} clips{few}: read with care)",
                  words["commands"][0]]]
    rows += [["weights follow what removing an input does (Spearman; target ≥ 0.8)", r.get("weight_effect_spearman")],
             ["weight an input loses when it is noise (target ≥ 0.5)", r.get("noised_weight_drop")],
             ["the same, with kinds of noise training never used", r.get("noised_weight_drop_unseen_noise")]]
    return [[k, None if v is None else round(float(v), 3)] for k, v in rows]
