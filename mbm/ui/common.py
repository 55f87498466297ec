"""Widgets and helpers shared by the tabs: the weights chart, the answer box, the newest request, output files.

Presentation only: no model logic lives here.
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from mbm.storage import atomic_write

OUTPUT_IMAGES = Path(tempfile.gettempdir()) / "mbm_output_images"  # see image_file
MODALITY_COLOURS = {"audio": "#2a9d8f", "image": "#e76f51", "text": "#457b9d"}
PORTRAIT_COLOURS = {"voice": "#2a9d8f", "face": "#e76f51", "profile": "#457b9d"}  # same hue per input kind


def share(w: float) -> str:
    """A weight with 2 decimals, or 2 significant digits below 0.01 (a present input never reads 0.00)."""
    return f"{w:.{2 if w >= 0.01 or w <= 0 else 1 - math.floor(math.log10(w))}f}"


def modality_weights_chart(weights: dict[str, float], present: list[str],
                           colours: dict[str, str] = MODALITY_COLOURS) -> str:
    """Horizontal bar chart of per-modality attention weights as inline SVG (absent inputs labelled so).

    The bars are named and ordered by ``weights``' keys (audio/image/text, or face/voice/profile),
    coloured by ``colours`` (grey for a name it lacks). SVG text costs microseconds to build, where a
    matplotlib PNG costs ~80 ms of CPU per request (``python -m tools.loadtest``; docs/voice_control.md, Speed).
    """
    label_w, bar_w, row_h, top = 70, 300, 30, 30  # px: name column, full-scale bar, row pitch, title band
    rows = []
    for k, (name, w) in enumerate(weights.items()):
        y = top + k * row_h
        length = max(0.0, min(1.0, float(w))) * bar_w
        text = share(w) if name in present else "absent (0)"
        rows.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{html.escape(name)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{length:.1f}" height="{row_h - 8}" '
            f'fill="{html.escape(colours.get(name, "#888888"))}"/>'
            f'<text x="{label_w + length + 6:.1f}" y="{y + 15}">{text}</text>')
    height = top + len(weights) * row_h + 22
    axis_y = top + len(weights) * row_h
    ticks = "".join(f'<line x1="{label_w + t * bar_w}" y1="{top}" x2="{label_w + t * bar_w}" y2="{axis_y}" '
                    f'stroke="currentColor" stroke-opacity="0.2"/>' for t in (0, 0.25, 0.5, 0.75, 1.0))
    summary = ", ".join(f"{n} {share(w) if n in present else 'absent'}" for n, w in weights.items())
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {label_w + bar_w + 60} {height}" '
            f'width="100%" style="max-width:440px;font:13px sans-serif;color:inherit" fill="currentColor" '
            f'aria-label="attention weights: {html.escape(summary)}">'
            f'<text x="{label_w}" y="18" font-weight="bold">How much each input counted</text>{ticks}'
            + "".join(rows)
            + f'<text x="{label_w}" y="{height - 6}" fill-opacity="0.75" font-size="11">share of the fused '
              f'representation (sums to 1)</text></svg>')


# The answer at a glance: one box per tab whose weight, colour and wording follow how sure
# the answer is. "sure": bold and large; "unsure": normal weight, amber, dashed, saying "Not sure" and
# the best guess; "none": no answer (nobody matched, not supported, nothing found), grey. Colours have
# a WCAG AA contrast (>= 4.5) on the light and the dark theme's background (tests/test_browser_layout.py).
ANSWER_ICONS = {"sure": "✔", "unsure": "?", "none": "–"}
ANSWER_CSS = """
.mbm-answer { --mbm-c: #1b6e2f; display: flex; gap: .6rem; align-items: flex-start; padding: .55rem .8rem;
  border: 2px solid var(--mbm-c); border-left-width: 7px; border-radius: 8px; color: var(--mbm-c);
  background: color-mix(in srgb, var(--mbm-c) 9%, transparent); scroll-margin-top: 8px; }
.mbm-answer.mbm-unsure { --mbm-c: #8a4f00; border-style: dashed; border-left-style: solid; }
.mbm-answer.mbm-none { --mbm-c: #4f5663; }
.dark .mbm-answer { --mbm-c: #72d88b; } .dark .mbm-answer.mbm-unsure { --mbm-c: #ffc35c; }
.dark .mbm-answer.mbm-none { --mbm-c: #b4bcc8; }
.mbm-icon { font-size: 1.5rem; line-height: 1.2; font-weight: 700; flex: none; }
.mbm-lead { font-size: 1.55rem; line-height: 1.25; font-weight: 700; overflow-wrap: anywhere; }
.mbm-unsure .mbm-lead, .mbm-none .mbm-lead { font-size: 1.15rem; font-weight: 500; }
.mbm-none .mbm-lead { font-style: italic; }
.mbm-detail { font-size: var(--text-md); line-height: 1.35; margin-top: .15rem; color: var(--body-text-color); }
"""


def answer_html(state: str, lead: str, detail: str = "") -> str:
    """The answer box (``ANSWER_CSS``): ``state`` is "sure", "unsure" or "none"; ``lead`` the answer in a
    few words, ``detail`` the confidence or what is missing (both plain text, escaped here)."""
    state = state if state in ANSWER_ICONS else "none"
    return (f'<div class="mbm-answer mbm-{state}" data-state="{state}">'
            f'<span class="mbm-icon" aria-hidden="true">{ANSWER_ICONS[state]}</span><div>'
            f'<div class="mbm-lead">{html.escape(lead)}</div>'
            + (f'<div class="mbm-detail">{html.escape(detail)}</div>' if detail else "") + "</div></div>")


def show_answer(selector: str) -> dict:
    """Event arguments that bring the answer at ``selector`` into view (top of the screen) when it is not
    wholly in view and has something to show: on a phone the answer is below the inputs."""
    js = (f"() => {{ const el = document.querySelector({selector!r}); if (!el || !el.textContent.trim()) return;"
          " const r = el.getBoundingClientRect(); if (r.top < 0 || r.bottom > window.innerHeight)"
          " el.scrollIntoView({block: 'start', behavior: 'smooth'}); }")
    return {"fn": None, "inputs": None, "outputs": None, "api_visibility": "private", "queue": False, "js": js}


# The page numbers each request it paints: this replaces the event's last input (a hidden gr.Number) with an
# id that grows with every request of the page (milliseconds, then a counter), before the request is sent.
REQUEST_ID_JS = ("(...args) => { window.__mbmSeq = ((window.__mbmSeq || 0) + 1) % 1000;"
                 " args[args.length - 1] = Date.now() * 1000 + window.__mbmSeq; return args; }")


class Newest:
    """Drop by request id: per browser session and tab, the largest request id seen (ids from
    ``REQUEST_ID_JS``). A request that starts after a newer one did, or ends after a newer one started,
    is superseded: its handler returns ``gr.skip()`` for every output, so an older answer never paints
    over a newer request's (whatever order they run or end in). Calls without an id (API clients) are
    never superseded. Remembers at most ``keep`` sessions (the least recently used forgotten)."""

    def __init__(self, keep: int = 4096):
        import threading
        from collections import OrderedDict

        self.keep, self.seen, self.lock = keep, OrderedDict(), threading.Lock()

    @staticmethod
    def _key(tab: str, request, request_id) -> tuple | None:
        session = getattr(request, "session_hash", None)
        if session is None or not isinstance(request_id, (int, float)) or isinstance(request_id, bool):
            return None
        return tab, session

    def start(self, tab: str, request, request_id) -> bool:
        """Note a request starting; False when a newer one of the same page and tab has already started."""
        key = self._key(tab, request, request_id)
        if key is None:
            return True
        with self.lock:
            newest = self.seen.get(key, float("-inf"))
            self.seen[key] = max(newest, request_id)
            self.seen.move_to_end(key)
            while len(self.seen) > self.keep:
                self.seen.popitem(last=False)
            return request_id >= newest

    def superseded(self, tab: str, request, request_id) -> bool:
        """Whether a newer request of the same page and tab has started since this one did."""
        key = self._key(tab, request, request_id)
        with self.lock:
            return key is not None and self.seen.get(key, float("-inf")) > request_id


NEWEST = Newest()


def cancel_on(listeners: list, events: list) -> None:
    """Each of ``listeners`` (a Clear button's ``click``) cancels ``events``, the requests that paint the
    answer, when they are queued or running: Gradio's ``cancels=``, so the page stops listening to them and
    their server tasks are cancelled, and nothing is painted beside the emptied inputs. (``cancels=`` gets
    a listener of its own: an event with cancels is sent the session id instead of its inputs.)"""
    for listener in listeners:
        listener(fn=None, inputs=None, outputs=None, cancels=events, api_visibility="private")


# Every ASCII punctuation mark may be backslash-escaped in CommonMark: escaping them all also stops
# GitHub-style auto-links ("www.x.example", "http://...") and entities ("&lt;")
MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")
# Right-to-left and other direction controls: echoed, they would turn the app's own words around
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def echo_markdown(**kwargs):
    """A ``gr.Markdown`` status box that quotes visitors' text (through :func:`plain`): without Gradio's
    default "$$ ... $$" maths, which KaTeX would draw after the escapes are gone."""
    import gradio as gr

    return gr.Markdown(latex_delimiters=[], **kwargs)


def plain(text: str) -> str:
    """User-controlled text (file names, typed words, names) as Markdown that shows it literally, on
    one line: punctuation escaped, direction controls dropped, runs of white space made one space."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(BIDI_CONTROLS.sub("", text).split()))


def image_file(image) -> str | None:
    """An output image (H, W, 3) uint8 as a PNG file named by its content, written atomically.

    Gradio saves an array output by rewriting one file per content in place, so two identical
    answers at once can serve a half-written file (``python -m tools.loadtest`` saw truncated
    downloads); a path written atomically is copied into its cache atomically instead.
    """
    if image is None:
        return None
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    data = buffer.getvalue()
    path = OUTPUT_IMAGES / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    if not path.is_file():
        atomic_write(path, lambda f: f.write(data), fsync=False)
        prune_folder(OUTPUT_IMAGES, keep=KEEP_OUTPUT_IMAGES, protect=path)  # Gradio serves its own copy
    return str(path)


KEEP_OUTPUT_IMAGES = 256


def prune_folder(folder: Path, keep: int, protect: Path | None = None) -> None:
    """Keep only the ``keep`` newest entries (files or folders) of ``folder``, and ``protect`` (the answer
    being served) whatever its time: a bounded temp folder."""
    import shutil

    try:
        entries = sorted((p for p in folder.iterdir() if p != protect), key=lambda p: p.stat().st_mtime,
                         reverse=True)
    except OSError:
        return
    for old in entries[max(0, keep - 1):]:
        try:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        except OSError:
            continue


def remove_stale_outputs() -> None:
    """At start: remove what earlier runs left in the temp folder (output images, report exports)."""
    import shutil

    tmp = Path(tempfile.gettempdir())
    for folder in [OUTPUT_IMAGES, tmp / "mbm_reports", *tmp.glob("mbm_report_*")]:
        shutil.rmtree(folder, ignore_errors=True)
