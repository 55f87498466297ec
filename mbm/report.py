"""Report card of one prediction: PNG, self-contained HTML (images inlined as base64) and JSON.

    paths = export_report(result, out_dir)   # {"png": Path, "html": Path, "json": Path}

The PNG is the aligned explanation figure (``mbm.viz.explanation_figure``). The
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
from pathlib import Path

import numpy as np

from mbm import viz
from mbm.explain import modality_effects, report_data


def _png_b64(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _array_png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _token_html(pairs) -> str:
    if pairs is None:
        return "<p class='absent'>text: absent (no map)</p>"
    spans = []
    for tok, w in pairs:
        alpha = 0.1 + 0.8 * float(w)
        spans.append(f"<span class='tok' style='background: rgba(85,168,104,{alpha:.2f})' "
                     f"title='{float(w):.2f}'>{html.escape(tok)}</span>")
    return "<p>" + " ".join(spans) + "</p>"


def report_html(result, effects=None, figure_png: bytes | None = None) -> str:
    """A self-contained HTML report card (every image a base64 data URI)."""
    effects = effects or modality_effects(result)
    if figure_png is None:
        figure_png = viz.figure_png(viz.explanation_figure(result, effects))
    m = viz.maps(result)
    view = viz.model_view(result)
    pictures = []
    if m["image_overlay"] is not None:
        pictures.append(("image attention over the crop the model saw", _array_png(m["image_overlay"])))
        pictures.append(("the crop the model saw", _array_png(np.asarray(view["image"]).repeat(4, 0).repeat(4, 1))))
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
.flag {{ color: #a00; font-weight: bold; }} .absent {{ color: #888; }}
</style></head><body>
<h1>{html.escape(result.action)} <small>({result.confidence:.2f})</small></h1>
<p>{html.escape(result.summary())}</p>
<img src="{_png_b64(figure_png)}" alt="explanation figure">
<h2>Modality weights and measured effect</h2>
<table><tr><th>modality</th><th>attention weight</th><th>p(action) without it</th><th>drop</th></tr>
{''.join(rows)}</table>{flag}
<h2>Top actions</h2><table><tr><th>action</th><th>p</th></tr>{top}</table>
<h2>Where the model looked</h2>{figs}
<h3>Text tokens</h3>{_token_html(m['text'])}
{'<h2>Notes</h2><ul>' + warn + '</ul>' if warn else ''}
</body></html>
"""


def export_report(result, out_dir: str | Path, effects=None, stem: str = "mbm_report") -> dict[str, Path]:
    """Write ``<stem>.png``, ``<stem>.html`` and ``<stem>.json`` into ``out_dir`` (created if needed).

    Returns:
        ``{"png": path, "html": path, "json": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    effects = effects or modality_effects(result)
    png = viz.figure_png(viz.explanation_figure(result, effects))
    paths = {"png": out / f"{stem}.png", "html": out / f"{stem}.html", "json": out / f"{stem}.json"}
    paths["png"].write_bytes(png)
    paths["html"].write_text(report_html(result, effects, png), encoding="utf-8")
    paths["json"].write_text(json.dumps(report_data(result, effects), indent=1, ensure_ascii=False), encoding="utf-8")
    return paths
