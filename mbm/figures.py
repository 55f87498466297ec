"""Whole-prediction figures: the weights beside the measured effects, and the aligned explanation
(image map, audio map, text map, weights) used by the app and the report card; PNG export, and SVG
export that follows the page's light or dark theme.

Colour rule for every figure here and in ``mbm.viz`` / ``mbm.eval_figures``: black (the default)
is *ink*, which ``figure_svg`` turns into the page's text colour; text drawn on a fixed colour (a
heat-map cell, a coloured token box) gets the gid ``ON_COLOUR`` and keeps its colour.
"""

from __future__ import annotations

import html
import re
import threading

import numpy as np
from matplotlib.figure import Figure

from mbm.viz import MODALITY_COLOURS, audio_figure, colormap, maps

ON_COLOUR = "on-colour"  # gid of text drawn on a fixed colour: it keeps its colour in either theme
ON_LIGHT = "#1a1a1a"  # dark text on a light fixed colour (pure black would be ink, themed)


def weights_figure(weights: dict[str, float], effects=None, fig: Figure | None = None, ax=None) -> Figure:
    """Horizontal bars of the modality weights, with the measured confidence drop beside each.

    Args:
        weights: modality -> weight (sum to 1, absent = 0).
        effects: an ``mbm.explain.ModalityEffects`` (or None): its drops are drawn as hatched bars
            and its disagreement flag is written in the title.
    """
    if ax is None:
        fig = Figure(figsize=(5, 2.4), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    names = list(weights)
    y = np.arange(len(names))
    ax.barh(y + 0.18, [weights[m] for m in names], height=0.36, label="attention weight",
            color=[MODALITY_COLOURS.get(m, "grey") for m in names])
    title = "modality weights"
    if effects is not None and effects.drop:
        drops = [effects.drop.get(m, np.nan) for m in names]
        ax.barh(y - 0.18, np.nan_to_num(drops), height=0.36, color="none", edgecolor="black", hatch="//",
                label="confidence drop without it")
        for k, d in enumerate(drops):
            if not np.isnan(d):
                ax.text(max(d, 0) + 0.01, y[k] - 0.18, f"{d:+.2f}", va="center", fontsize=7)
        title += "  ⚠ order disagrees with measured effect" if effects.disagree else "  ✓ order matches effect"
    for k, m in enumerate(names):
        ax.text(weights[m] + 0.01, y[k] + 0.18, f"{weights[m]:.2f}", va="center", fontsize=7)
    ax.set_yticks(y, names)
    ax.set_xlim(min(0.0, *(effects.drop.values() if effects is not None and effects.drop else [0.0])) - 0.02, 1.15)
    ax.axvline(0, color="black", lw=0.5)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def explanation_figure(result, effects=None) -> Figure:
    """One aligned explanation of a prediction: image heatmap, audio attention, text tokens, weights.

    Every modality gets its panel in the same place; an absent one says "absent"
    and shows no map. ``effects`` (``mbm.explain.modality_effects(result)``) adds
    the measured confidence drops beside the weights.
    """
    fig = Figure(figsize=(12, 5.2), layout="constrained")
    grid = fig.add_gridspec(3, 3, width_ratios=[1, 1.8, 1.2], height_ratios=[1, 2, 1.1])
    ax_img = fig.add_subplot(grid[0:2, 0])
    ax_wav = fig.add_subplot(grid[0, 1])
    ax_mel = fig.add_subplot(grid[1, 1], sharex=ax_wav)
    ax_txt = fig.add_subplot(grid[2, 0:2])
    ax_w = fig.add_subplot(grid[0:2, 2])
    ax_info = fig.add_subplot(grid[2, 2])
    w = result.modality_weights
    fig.suptitle(f"{result.action}  ({result.confidence:.2f})", fontsize=13, fontweight="bold")

    m = maps(result)
    if m["image_overlay"] is not None:
        ax_img.imshow(m["image_overlay"])
        ax_img.set_title(f"image · weight {w.get('image', 0):.2f}", fontsize=9)
    else:
        _absent(ax_img, "image")
    ax_img.set_xticks([])
    ax_img.set_yticks([])

    if result.inputs.audio is not None and "audio" in result.maps:
        audio_figure(result.inputs.audio.waveform, result.inputs.audio.mel, result.maps["audio"],
                     axes=(ax_wav, ax_mel))
        ax_wav.set_title(f"audio · weight {w.get('audio', 0):.2f}", fontsize=9)
    else:
        _absent(ax_wav, "audio")
        _absent(ax_mel, "")

    _text_panel(ax_txt, m["text"], w.get("text", 0.0))
    weights_figure(w, effects, ax=ax_w)
    ax_info.axis("off")
    lines = [f"{a}: {p:.2f}" for a, p in result.top[:3]]
    if result.summary():
        lines.append(result.summary())
    ax_info.text(0, 1, "\n".join(lines), va="top", fontsize=8, family="monospace", wrap=True)
    return fig


def _absent(ax, name: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if name:
        ax.text(0.5, 0.5, f"{name}: absent (no map)", ha="center", va="center", transform=ax.transAxes)


def _text_panel(ax, pairs, weight: float) -> None:
    """Tokens as coloured boxes, darker = more attention."""
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    if pairs is None:
        ax.text(0.5, 0.5, "text: absent (no map)", ha="center", va="center", transform=ax.transAxes)
        return
    ax.set_title(f"text · weight {weight:.2f}", fontsize=9)
    cmap = colormap("Greens")
    n = len(pairs)
    for k, (tok, x) in enumerate(pairs):
        ax.text((k + 0.5) / n, 0.5, tok, ha="center", va="center", transform=ax.transAxes, fontsize=10,
                color="white" if x > 0.6 else ON_LIGHT, gid=ON_COLOUR,
                bbox=dict(boxstyle="round,pad=0.3", fc=cmap(0.15 + 0.85 * x), ec="none"))


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """Render a Figure to PNG bytes (no pyplot, no display needed)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


_SVG_LOCK = threading.Lock()  # svg.fonttype is a global setting: one SVG export at a time sets it
PAPER = "#fffffe"  # legend boxes, drawn in the page's background colour in SVG
_INK = re.compile(r"#000000\b")
_GROUP_ID = re.compile(r'<g id="([^"]*)"')


def figure_svg(fig: Figure, title: str = "figure") -> str:
    """A Figure as inline SVG that follows the page's theme: transparent background, ink (black) in
    the surrounding text colour (``currentColor``), legend boxes in the page's background colour
    (Gradio's ``--background-fill-primary``); text stays text. For gr.HTML.

    Colour maps and other explicit colours are kept. ``title`` is the SVG's accessible name.
    """
    import io

    from matplotlib import rc_context
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes)]:
        if legend is not None:
            legend.get_frame().set_facecolor(PAPER)
    FigureCanvasSVG(fig)
    buf = io.StringIO()
    with _SVG_LOCK, rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", transparent=True)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]  # no XML declaration or doctype inside HTML
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.DOTALL)
    # its <style> says "* {...}", which inline would restyle the whole page: the same as attributes below
    svg = re.sub(r"<style[^>]*>.*?</style>", "", svg, flags=re.DOTALL)
    svg = _INK.sub("currentColor", svg).replace(PAPER, "var(--background-fill-primary, #fff)")
    # matplotlib's group ids repeat in every figure of a page: drop them; the on-colour mark becomes a class
    svg = _GROUP_ID.sub(lambda m: '<g class="on-colour"' if m.group(1) == ON_COLOUR else "<g", svg)
    width_pt = float(re.search(r'width="([0-9.]+)pt"', svg).group(1))
    return re.sub(r'<svg ([^>]*?)width="[0-9.]+pt" height="[0-9.]+pt"',
                  lambda m: f'<svg {m.group(1)}width="100%" role="img" aria-label="{html.escape(title)}" '
                            f'fill="currentColor" stroke-linejoin="round" stroke-linecap="butt" '
                            f'style="max-width:{width_pt * 4 / 3:.0f}px;height:auto;color:inherit"',
                  svg, count=1)
