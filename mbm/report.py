"""Report card of one prediction: PNG, self-contained HTML (images inlined as base64) and JSON.

    paths = export_report(result, out_dir)   # {"png": Path, "html": Path, "json": Path}

The PNG is the aligned explanation figure (``mbm.figures.explanation_figure``). The
HTML holds the same figure, the crop the model saw with its heatmap, the log-mel,
the highlighted tokens, the weights beside the measured effects and the top
actions, with no external file or script. The JSON holds the raw numbers: the
prediction (``result.to_json()``), the effects and every map.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path

import numpy as np

from mbm import figures, viz
from mbm.explain import modality_effects, report_data


def _png_b64(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _array_png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _token_html(pairs, why_absent: str | None = None) -> str:
    if pairs is None:
        return f"<p class='absent'>text: no map ({html.escape(why_absent or 'absent')})</p>"
    spans = []
    for tok, w in pairs:
        alpha = 0.1 + 0.8 * float(w)
        spans.append(f"<span class='tok' style='background: rgba(85,168,104,{alpha:.2f})' "
                     f"title='{float(w):.2f}'>{html.escape(tok)}</span>")
    return "<p>" + " ".join(spans) + "</p>"


def absent_reasons(result, settings: dict | None = None) -> dict[str, str]:
    """Why each input without a map has none: switched off, ignored (the warning), or not given."""
    reasons = {}
    for m in result.modality_weights:
        if m in result.maps:
            continue
        warning = next((w for w in result.warnings if w.startswith(f"{m}:")), None)
        if settings and settings.get(f"use_{m}") is False:
            reasons[m] = "switched off in the robustness controls"
        elif warning:
            reasons[m] = "ignored: " + warning.split(":", 1)[1].strip()
        else:
            reasons[m] = "not given"
    return reasons


def _context_html(result, settings: dict | None, model: dict | None) -> str:
    """Date, model, settings and what each input was, for the top of the card."""
    items = [("created", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
             ("model", ", ".join(f"{k} {v}" for k, v in (model or {}).items()) or "–"),
             ("maps", f"{result.map_kind} (see docs/voice_control.md)"),
             ("settings", ", ".join(f"{k} = {v}" for k, v in (settings or {}).items()) or "defaults")]
    inputs = {m: "given" for m in result.maps}
    inputs.update({m: f"absent: {why}" for m, why in absent_reasons(result, settings).items()})
    if result.inputs.text is not None:
        inputs["text"] = "“" + " ".join(result.inputs.text.tokens) + "”"
    items += [(f"input: {m}", inputs[m]) for m in result.modality_weights]
    return "<table class='context'>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                                               for k, v in items) + "</table>"


def report_html(result, effects=None, figure_png: bytes | None = None, settings: dict | None = None,
                model: dict | None = None) -> str:
    """A self-contained HTML report card (every image a base64 data URI), with its context on top:
    date, model and checkpoint, settings, each input (or why it is absent)."""
    effects = effects or modality_effects(result)
    if figure_png is None:
        figure_png = figures.figure_png(figures.explanation_figure(result, effects))
    m = viz.maps(result)
    view = viz.model_view(result)
    pictures = []
    if view["image"] is not None:
        pictures.append(("input: the crop of the photo the model saw", _array_png(np.asarray(view["image"]))))
    if m["image_overlay"] is not None:
        pictures.append((f"image map ({result.map_kind}) over that crop", _array_png(m["image_overlay"])))
    if view["mel_image"] is not None:
        pictures.append(("log-mel the model heard (low bands at the bottom)", _array_png(view["mel_image"])))
    rows = []
    for mod, w in result.modality_weights.items():
        without = effects.without.get(mod)
        drop = effects.drop.get(mod)
        rows.append(f"<tr><td>{mod}</td><td>{w:.3f}</td><td>{'' if without is None else f'{without:.3f}'}</td>"
                    f"<td>{'' if drop is None else f'{drop:+.3f}'}</td></tr>")
    top = "".join(f"<tr><td>{html.escape(a)}</td><td>{p:.3f}</td></tr>" for a, p in result.top)
    flag = ("<p class='flag'>⚠ The order of the weights disagrees with the measured effects: "
            + ", ".join(f"{a} weighs more than {b} but removing {b} costs more" for a, b in effects.pairs) + "</p>"
            if effects.disagree else "")
    figs = "".join(f"<figure><img src='{_png_b64(png)}' alt='{html.escape(cap)}'><figcaption>{html.escape(cap)}"
                   f"</figcaption></figure>" for cap, png in pictures)
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in result.warnings + result.inputs.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mbm report: {html.escape(result.action)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; }}
img {{ max-width: 100%; }} figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }}
figcaption {{ font-size: 0.8em; color: #555; }} .tok {{ padding: 2px 5px; border-radius: 4px; }}
.flag {{ color: #a00; font-weight: bold; }} .absent {{ color: #666; }}
.context th {{ text-align: left; background: #f4f4f4; }}
</style></head><body>
<h1>{html.escape(result.action.replace("_", " "))} <small>({result.confidence:.2f})</small></h1>
<p>{html.escape(result.summary())}</p>
{_context_html(result, settings, model)}
<img src="{_png_b64(figure_png)}" alt="explanation figure">
<h2>Modality weights and measured effect</h2>
<table><tr><th>modality</th><th>attention weight</th><th>p(action) without it</th><th>drop</th></tr>
{''.join(rows)}</table>{flag}
<h2>Top actions</h2><table><tr><th>action</th><th>p</th></tr>{top}</table>
<h2>Inputs and where the answer comes from</h2>{figs}
<h3>Text tokens</h3>{_token_html(m['text'], absent_reasons(result, settings).get('text'))}
{'<h2>Notes</h2><ul>' + warn + '</ul>' if warn else ''}
</body></html>
"""


def export_report(result, out_dir: str | Path, effects=None, stem: str = "mbm_report", settings: dict | None = None,
                  model: dict | None = None) -> dict[str, Path]:
    """Write ``<stem>.png``, ``<stem>.html`` and ``<stem>.json`` into ``out_dir`` (created if needed).

    ``settings`` (the robustness levels and switches) and ``model`` (checkpoint name and hash) go on
    the card and into the JSON, with the reason each absent input has no map.

    Returns:
        ``{"png": path, "html": path, "json": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    effects = effects or modality_effects(result)
    png = figures.figure_png(figures.explanation_figure(result, effects))
    paths = {"png": out / f"{stem}.png", "html": out / f"{stem}.html", "json": out / f"{stem}.json"}
    paths["png"].write_bytes(png)
    paths["html"].write_text(report_html(result, effects, png, settings, model), encoding="utf-8")
    data = {**report_data(result, effects), "settings": settings or {}, "model": model or {},
            "absent_maps": absent_reasons(result, settings)}
    paths["json"].write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    return paths
