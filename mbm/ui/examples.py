"""The tabs' examples: read from each scenario's ``examples.json``, shown as clickable cards with a thumbnail of
each one's photo (or a glyph), which fill the tab's inputs."""

from __future__ import annotations

import base64
import html
import io
import json
import sys
from pathlib import Path

from PIL import Image as PILImage

from mbm.paths import ROOT


def load_examples(path: Path, file_keys: tuple[str, ...] = ("audio", "image")) -> tuple[list[list], list[str]]:
    """Example rows ``[*files, text]`` and captions from ``examples.json``; empty if absent.

    The file holds a list of ``{"audio": path|null, "image": path|null, "text": str|null,
    "caption": str}`` (the file keys are ``file_keys``: ``("face", "voice")`` for portraits);
    paths are relative to the repository root (or to the file's folder).
    Entries whose files are missing are skipped with a message on stderr.
    """
    if not path.is_file():
        return [], []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"app: ignoring {path}: {e}", file=sys.stderr)
        return [], []
    rows, captions = [], []
    for entry in entries if isinstance(entries, list) else []:
        row, ok = [], isinstance(entry, dict)
        for key in file_keys:
            name = entry.get(key) if ok else None
            if name:
                found = next((p for p in (ROOT / name, path.parent / name) if p.is_file()), None)
                if found is None:
                    print(f"app: skipping example {entry.get('caption')!r}: {name} not found", file=sys.stderr)
                    ok = False
                row.append(str(found) if found else None)
            else:
                row.append(None)
        if not ok:
            continue
        rows.append(row + [entry.get("text") or None])
        captions.append(entry.get("caption") or " + ".join(Path(x).name if i < len(file_keys) else x
                                                           for i, x in enumerate(rows[-1]) if x))
    return rows, captions


THUMB_PX = 64  # example thumbnails: shown at this size (stored at twice it, sharp on a hi-dpi screen)
# The card of one example: thumbnail left, caption right (on a phone, two cards a row: caption below).
CARD_STYLE = ("display:flex;flex-wrap:wrap;align-items:center;gap:.55rem;width:clamp(7.5rem,33vw,14.5rem);"
              "text-align:left")
CAPTION_STYLE = "flex:1 1 5.5rem;font-size:var(--text-sm);line-height:1.3"  # below the thumbnail when narrow
THUMB_STYLE = ("width:clamp(44px,12vw,{px}px);height:clamp(44px,12vw,{px}px);flex:none;object-fit:cover;"
               "border-radius:6px")
# What an example without a photo gives instead (aria-hidden: the caption alone names the button).
GLYPHS = {"text": '<text x="32" y="41" text-anchor="middle" font-size="24" font-weight="bold" '
                  'fill="currentColor">Aa</text>',
          "audio": '<path d="M14 32h4M22 24v16M28 18v28M34 26v12M40 20v24M46 28v8M50 32h2" stroke="currentColor" '
                   'stroke-width="3" stroke-linecap="round" fill="none"/>'}


def thumbnail_data_uri(path: str | Path, px: int = 2 * THUMB_PX) -> str:
    """A square JPEG thumbnail (centre crop, ``px`` wide) of a committed photo as a data: URI.

    Inlined in the page, so it needs no file route and shows from any working directory.
    """
    from PIL import ImageOps

    with PILImage.open(path) as img:
        square = ImageOps.fit(img.convert("RGB"), (px, px), PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    square.save(buffer, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def example_card(caption: str, photo: str | None, kind: str = "text") -> str:
    """One example as the HTML inside its button: the photo's thumbnail (or a glyph for ``kind``,
    "text" or "audio", when it has none) and the caption, which alone names the button."""
    style = THUMB_STYLE.format(px=THUMB_PX)
    if photo:
        thumb = f'<img src="{thumbnail_data_uri(photo)}" alt="" style="{style}">'
    else:
        thumb = (f'<svg viewBox="0 0 64 64" aria-hidden="true" style="{style};color:inherit">'
                 f'<rect x="1" y="1" width="62" height="62" rx="8" fill="none" stroke="currentColor" '
                 f'stroke-opacity="0.35" stroke-width="2"/>{GLYPHS[kind]}</svg>')
    return (f'<div style="{CARD_STYLE}">{thumb}<span style="{CAPTION_STYLE}">'
            f'{html.escape(caption)}</span></div>')


def example_cards(rows: list[list], captions: list[str], inputs: list, photo: int, label: str, elem_id: str):
    """Clickable examples with a thumbnail of each one's photo: a ``gr.Dataset`` of HTML cards.

    ``rows`` are ``load_examples`` rows (one value per component of ``inputs``), ``photo`` the index
    of the photo in a row. A click fills ``inputs`` with the example; returns that event, for the
    caller to chain the run onto (``.then(...)``). Must be called inside a Blocks context.
    """
    import gradio as gr

    def kind(row):  # what an example without a photo shows instead
        return "text" if isinstance(row[-1], str) and row[-1] else "audio"

    cards = [[example_card(c, r[photo], kind(r))] for r, c in zip(rows, captions)]
    dataset = gr.Dataset(components=["html"], samples=cards, type="index", layout="gallery", label=label,
                         samples_per_page=12, elem_id=elem_id)

    def load(index):
        """The example's values, one per input (an input it leaves empty is cleared)."""
        row = rows[index] if isinstance(index, int) and 0 <= index < len(rows) else [None] * len(inputs)
        return row if len(inputs) > 1 else row[0]

    return dataset.click(load, dataset, inputs, queue=False, show_progress="hidden", api_visibility="private")
