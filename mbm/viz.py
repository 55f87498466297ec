"""Where the model looked, and what it saw: maps, figures and app-ready data.

Object-oriented matplotlib only (``matplotlib.figure.Figure``, never ``pyplot``),
or plain numpy arrays, so nothing here touches a global figure state and every
function is safe in a multi-user web app. The library never imports gradio; the
return values are what Gradio components take:

- ``image_attention_map`` / ``image_overlay``: (S, S) map in [0, 1] / (S, S, 3) uint8 for gr.Image;
- ``text_highlights``: ``[(token, weight)]`` for gr.HighlightedText, weights scaled to a max of 1;
- ``audio_frame_weights`` / ``audio_figure``: per-frame weights / waveform + log-mel + attention Figure;
- (the whole-prediction figures, ``explanation_figure`` and ``weights_figure``, are in ``mbm.figures``);
- ``model_view``: the preprocessed inputs the model saw ("what the model sees").

Token layout (from the encoders): the image encoder returns a g x g grid of tokens
in row-major order (g = sqrt(T); 8 x 8 for a 64 px input); the audio encoder
returns T_audio time steps that cover the clip's frames evenly; text tokens are
the words. An absent modality has no map: every function returns None for it,
never a made-up one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

MODALITY_COLOURS = {"audio": "#4C72B0", "image": "#DD8452", "text": "#55A868"}
HEAT_CMAP = "inferno"


def _normalise_max(w: np.ndarray) -> np.ndarray:
    """Scale non-negative weights so the largest is 1 (all-zero stays zero)."""
    w = np.clip(np.asarray(w, dtype=np.float64), 0.0, None)
    peak = w.max() if w.size else 0.0
    return w / peak if peak > 0 else w


# --- image ---------------------------------------------------------------------------------------

def image_attention_grid(token_weights: Sequence[float] | None) -> np.ndarray | None:
    """Image token weights (T,) -> (g, g) grid, row-major, scaled to max 1; None when absent.

    Raises:
        ValueError: T is not a square number (not an image token grid).
    """
    if token_weights is None or len(token_weights) == 0:
        return None
    w = np.asarray(token_weights, dtype=np.float64)
    g = round(math.sqrt(w.size))
    if g * g != w.size:
        raise ValueError(f"{w.size} image token weights do not form a square grid")
    return _normalise_max(w.reshape(g, g))  # (g, g)


def image_attention_map(token_weights: Sequence[float] | None, size: int, smooth: bool = True) -> np.ndarray | None:
    """Image token weights (T,) -> (size, size) float map in [0, 1] (max 1) over the crop; None if absent.

    Each grid cell covers a ``size / g`` square of the crop. With ``smooth`` the
    grid is upsampled bilinearly (cell centres keep their values), else as blocks.
    """
    grid = image_attention_grid(token_weights)
    if grid is None:
        return None
    g = grid.shape[0]
    if not smooth:
        cell = np.kron(grid, np.ones((math.ceil(size / g),) * 2))
        return _normalise_max(cell[:size, :size])
    # bilinear: sample the grid at each pixel centre, in grid coordinates (cell centres at i + 0.5)
    pos = (np.arange(size) + 0.5) * g / size - 0.5  # (size,)
    pos = np.clip(pos, 0, g - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, g - 1)
    f = pos - i0
    rows = grid[i0] * (1 - f)[:, None] + grid[i1] * f[:, None]  # (size, g)
    out = rows[:, i0] * (1 - f)[None] + rows[:, i1] * f[None]  # (size, size)
    return _normalise_max(out)


def colormap(name: str = HEAT_CMAP):
    import matplotlib

    return matplotlib.colormaps[name]


SHOWN_SIDE = 256  # a small crop is pixel-repeated up to about this side in the app


def enlarged(img: np.ndarray) -> np.ndarray:
    """(S, S, 3) -> the same picture pixel-repeated so it is about SHOWN_SIDE wide (64 px -> 256)."""
    k = max(1, SHOWN_SIDE // img.shape[0])
    return img.repeat(k, 0).repeat(k, 1) if k > 1 else img


def image_overlay(shown: np.ndarray | None, token_weights: Sequence[float] | None,
                  alpha: float = 0.55) -> np.ndarray | None:
    """The crop the model saw with its attention heatmap blended on top, :func:`enlarged` (a 64 px crop is
    not a thumbnail): (S*k, S*k, 3) uint8; None if absent.

    Args:
        shown: (S, S, 3) uint8 crop (``result.inputs.image.shown``).
        token_weights: one number per cell of a square grid, row-major (``result.maps["image"]``:
            attention per token, or occlusion per region).
        alpha: heat opacity at the most-attended region (it fades with the weight).
    """
    if shown is None or token_weights is None:
        return None
    shown = np.asarray(shown)
    s = shown.shape[0]
    heat = image_attention_map(token_weights, s)  # (S, S) in [0, 1]
    rgb = colormap()(heat)[..., :3]  # (S, S, 3) in [0, 1]
    a = (alpha * (0.25 + 0.75 * heat))[..., None]  # (S, S, 1)
    out = shown.astype(np.float64) / 255.0 * (1 - a) + rgb * a
    out = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
    return enlarged(out)


# --- text ----------------------------------------------------------------------------------------

def text_highlights(tokens: Sequence[str] | None, token_weights: Sequence[float] | None,
                    separator: str | None = None) -> list[tuple[str, float | None]] | None:
    """Text tokens and weights -> ``[(token, weight)]`` with weights scaled to a max of 1; None if absent.

    This is the value gr.HighlightedText takes (numbers render as a colour scale).
    With ``separator`` (e.g. ``" "``) a ``(separator, None)`` pair is put between
    tokens so the browser shows them as separate words.
    """
    if tokens is None or token_weights is None or len(tokens) == 0:
        return None
    if len(tokens) != len(token_weights):
        raise ValueError(f"{len(tokens)} tokens but {len(token_weights)} weights")
    w = _normalise_max(token_weights)
    pairs: list[tuple[str, float | None]] = []
    for k, (tok, x) in enumerate(zip(tokens, w)):
        if separator is not None and k:
            pairs.append((separator, None))
        pairs.append((str(tok), round(float(x), 4)))
    return pairs


# --- audio ---------------------------------------------------------------------------------------

def audio_frame_weights(token_weights: Sequence[float] | None, n_frames: int) -> np.ndarray | None:
    """Audio token weights (T_audio,) -> (n_frames,) per-frame weights, max 1; None if absent.

    The T_audio tokens are time steps covering the clip's frames evenly: token t
    covers frames ``[t * n_frames / T, (t + 1) * n_frames / T)``; each frame gets
    the weight of the token covering its centre.
    """
    if token_weights is None or len(token_weights) == 0:
        return None
    w = np.asarray(token_weights, dtype=np.float64)
    idx = np.minimum(((np.arange(n_frames) + 0.5) * w.size / n_frames).astype(int), w.size - 1)
    return _normalise_max(w[idx])  # (n_frames,)


def audio_figure(waveform: np.ndarray | None, mel, token_weights: Sequence[float] | None = None,
                 sample_rate: int = 16000, hop_length: int = 160, fig: Figure | None = None,
                 axes=None) -> Figure | None:
    """Waveform (top) above the log-mel (bottom), with the audio attention drawn over both; None if absent.

    Args:
        waveform: (N,) the window the model heard; mel: (n_mels, frames) in [0, 1] (tensor or array).
        token_weights: audio token weights, or None to draw the inputs only.
        axes: optional (ax_wave, ax_mel) to draw into (used by ``explanation_figure``).
    """
    if mel is None:
        return None
    mel = np.asarray(mel, dtype=np.float64)
    n_mels, n_frames = mel.shape
    seconds = n_frames * hop_length / sample_rate
    if axes is None:
        fig = Figure(figsize=(7, 4), layout="constrained")
        ax_w, ax_m = fig.subplots(2, 1, sharex=True, height_ratios=[1, 2])
    else:
        ax_w, ax_m = axes
        fig = ax_w.figure
    if waveform is not None:
        wav = np.asarray(waveform, dtype=np.float64)
        t = np.arange(wav.size) / sample_rate
        ax_w.plot(t, wav, lw=0.5, color="black")  # ink: the page's text colour in SVG
        peak = float(np.abs(wav).max()) or 1.0
        ax_w.set_ylim(-1.05 * peak, 1.05 * peak)
    ax_w.set_ylabel("waveform")
    ax_w.set_yticks([])
    ax_m.imshow(mel, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, n_mels))
    ax_m.set_ylabel("mel band")
    ax_m.set_xlabel("time (s)")
    frames = audio_frame_weights(token_weights, n_frames)
    if frames is not None:
        edges = np.arange(n_frames + 1) * hop_length / sample_rate
        # attention as a shaded band on the waveform and a curve over the spectrogram
        for k in range(n_frames):
            ax_w.axvspan(edges[k], edges[k + 1], color=MODALITY_COLOURS["audio"], alpha=0.45 * frames[k], lw=0)
        centres = (edges[:-1] + edges[1:]) / 2
        ax_m.plot(centres, frames * (n_mels - 1), color="cyan", lw=1.5, label="map (max = 1)")
        ax_m.legend(loc="upper right", fontsize=7, framealpha=0.6)
    ax_m.set_xlim(0, seconds)
    return fig


# --- whole predictions ---------------------------------------------------------------------------

def _present(result, modality: str) -> bool:
    return getattr(result.inputs, modality, None) is not None and modality in result.maps


def maps(result) -> dict:
    """Every map of a VoiceControlResult; an absent modality maps to None.

    Returns:
        ``{"image": (S, S) array | None, "image_overlay": (4S, 4S, 3) uint8 | None,
        "text": [(token, weight)] | None, "audio": (frames,) array | None}``.
    """
    inp = result.inputs
    tw = result.maps
    image = inp.image if _present(result, "image") else None
    text = inp.text if _present(result, "text") else None
    audio = inp.audio if _present(result, "audio") else None
    return {
        "image": image_attention_map(tw["image"], image.shown.shape[0]) if image else None,
        "image_overlay": image_overlay(image.shown, tw["image"]) if image else None,
        "text": text_highlights(text.tokens, tw["text"]) if text else None,
        "audio": audio_frame_weights(tw["audio"], audio.mel.shape[-1]) if audio else None,
    }


def model_view(result) -> dict:
    """What the model sees: the preprocessed inputs, absent ones as None.

    Returns:
        ``{"image": (S, S, 3) uint8 crop, "mel": (n_mels, frames) array in [0, 1],
        "mel_image": (n_mels*3, frames*3, 3) uint8 picture of the log-mel (low bands at the bottom),
        "waveform": (N,) float32, "tokens": [str]}``; for gr.Image / gr.Image / gr.JSON.
    """
    inp = result.inputs
    mel = None if inp.audio is None else np.asarray(inp.audio.mel, dtype=np.float64)
    mel_image = None
    if mel is not None:
        rgb = colormap("magma")(mel[::-1])[..., :3]  # low frequencies at the bottom
        mel_image = (rgb * 255).round().astype(np.uint8).repeat(3, 0).repeat(3, 1)
    return {
        "image": None if inp.image is None else inp.image.shown,
        "mel": mel, "mel_image": mel_image,
        "waveform": None if inp.audio is None else inp.audio.waveform,
        "tokens": None if inp.text is None else list(inp.text.tokens),
    }
