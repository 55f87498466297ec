"""Widgets and helpers shared by the tabs: settings, the weights chart, file values, examples.

Presentation only: no model logic lives here.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math

import re
import sys
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image as PILImage

from mbm.paths import ROOT
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
    matplotlib PNG costs ~80 ms of CPU per request (``python -m mbm.loadtest``; README, Speed).
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


MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~])")


def plain(text: str) -> str:
    """Escape Markdown so user-controlled text (file names, unknown words) shows literally."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


class ParameterError(ValueError):
    """An API argument of the wrong type or out of range; the message names the parameter."""


def _allowed_roots() -> list[Path]:
    from gradio.processing_utils import get_upload_folder

    return [Path(get_upload_folder()).resolve(), (ROOT / "assets").resolve()]


def file_value(value, param: str = "file") -> str | bytes | None:
    """A file input as the library takes it: a path (or bytes for an inline data URL); None if absent.

    Events run with ``preprocess=False`` so that the library, not Gradio, decodes every upload and
    explains what is wrong with a bad one; the value is then Gradio's FileData dict (its path checked
    by Gradio to lie in its upload folder). Examples run with preprocessing and give a plain path, which
    must lie in Gradio's upload folder or the repository's assets. A data URL (``{"url": "data:..."}``)
    obeys the same size cap as an upload (``MBM_MAX_UPLOAD_MB``), checked before it is decoded.

    Raises:
        ParameterError: anything else, with a message naming ``param``.
    """
    from mbm.limits import MAX_UPLOAD_BYTES, size_text

    if value is None:
        return None
    if isinstance(value, str):
        if not value:
            return None
        try:
            path = Path(value).resolve()
        except (OSError, ValueError):
            path = None
        if path is None or not any(path.is_relative_to(r) for r in _allowed_roots()):
            raise ParameterError(f"{param}: a file path must be an upload of this app; upload the file instead")
        return str(path)
    if not isinstance(value, dict):
        raise ParameterError(f"{param}: expected a file (a FileData object such as handle_file(...) makes), "
                             f"got a {type(value).__name__}")
    if isinstance(value.get("path"), str) and value["path"]:
        return file_value(value["path"], param)
    url = value.get("url")
    if isinstance(url, str) and url.startswith("data:"):
        header, sep, payload = url.partition(",")
        if not sep:
            raise ParameterError(f"{param}: the data URL has no ',' before its data")
        if len(payload) > MAX_UPLOAD_BYTES * 4 // 3 + 8:  # checked before decoding
            raise ParameterError(f"{param}: the inlined file is larger than {size_text(MAX_UPLOAD_BYTES)}, "
                                 "the upload limit")
        try:
            data = base64.b64decode(payload, validate=False) if header.endswith(";base64") else \
                __import__("urllib.parse").parse.unquote_to_bytes(payload)
        except ValueError:
            raise ParameterError(f"{param}: the data URL is not valid base64") from None
        if len(data) > MAX_UPLOAD_BYTES:
            raise ParameterError(f"{param}: the inlined file is larger than {size_text(MAX_UPLOAD_BYTES)}")
        return data
    if url is None and value.get("path") is None:
        return None
    raise ParameterError(f"{param}: give an uploaded file or a data: URL (other URLs are not fetched)")


def file_values(value, param: str = "files") -> list:
    """A multiple-file input (a list of FileData dicts, or paths from an example) as paths/bytes."""
    if value is None:
        return []
    if isinstance(value, (str, dict)):  # one file where a list was expected (e.g. from an API client)
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ParameterError(f"{param}: expected a list of files, got a {type(value).__name__}")
    from mbm.scenarios.portrait.predictor import MAX_ENROL_PHOTOS

    if len(value) > MAX_ENROL_PHOTOS:
        raise ParameterError(f"{param}: give at most {MAX_ENROL_PHOTOS} photos")
    return [f for f in (file_value(v, f"{param}[{k}]") for k, v in enumerate(value)) if f is not None]


def text_value(value, param: str, max_chars: int) -> str | None:
    """A text argument: None/empty -> None; not a string or longer than ``max_chars`` -> ParameterError."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParameterError(f"{param}: expected text, got a {type(value).__name__}")
    value = value.strip()
    if len(value) > max_chars:
        raise ParameterError(f"{param}: at most {max_chars} characters (got {len(value)})")
    return value or None


def number_value(value, param: str, lo: float = 0.0, hi: float = 1.0) -> float:
    """A slider argument: a number in ``[lo, hi]`` (None -> lo); anything else -> ParameterError."""
    if value is None:
        return lo
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterError(f"{param}: expected a number between {lo:g} and {hi:g}, got "
                             + (repr(value) if isinstance(value, (int, float)) and not isinstance(value, bool)
                                else f"a {type(value).__name__}"))
    if not lo <= value <= hi:
        raise ParameterError(f"{param}: expected a number between {lo:g} and {hi:g}, got {value!r}")
    return float(value)


def bool_value(value, param: str, default: bool = True) -> bool:
    """A switch argument: true/false (also the strings "true"/"false"); None -> default."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ParameterError(f"{param}: expected true or false, got a {type(value).__name__}")


def guarded(title: str):
    """Decorator for event handlers: every failure reaches the visitor / API client as a message.

    ValueError (InputError, ParameterError, storage errors) -> its message; MemoryError -> "too large";
    anything unexpected -> a generic message (the traceback is logged on the server, never sent).
    """
    import functools
    import logging

    def wrap(fn):
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except ValueError as e:
                raise user_error(e, title) from None
            except MemoryError:
                raise gr.Error("the input is too large to process", title=title, print_exception=False) from None
            except Exception:  # noqa: BLE001 - logged here, a plain message for the client
                logging.getLogger("mbm.app").exception("unexpected error in %s", fn.__name__)
                raise gr.Error("something went wrong on the server while processing this request; it was "
                               "logged. Try again or with another file.", title=title,
                               print_exception=False) from None
        return handler
    return wrap


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


def image_file(image) -> str | None:
    """An output image (H, W, 3) uint8 as a PNG file named by its content, written atomically.

    Gradio saves an array output by rewriting one file per content in place, so two identical
    answers at once can serve a half-written file (``python -m mbm.loadtest`` saw truncated
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


def user_error(e: Exception, title: str) -> gr.Error:
    """A library InputError/ValueError as a toast for the user (and an AppError for API clients)."""
    return gr.Error(html.escape(str(e), quote=False), title=title, print_exception=False)


def check_arguments(demo: gr.Blocks) -> None:
    """Argument checks Gradio runs before its own validation of an API call, for every event of ``demo``.

    - fewer arguments than the event takes (``{"data": []}``): the rest are None (absent), and the
      handler's own message says what is needed (Gradio would list its component objects);
    - a file argument that is not a file object (a number, a string, a list where one file goes): a
      message naming the parameter (Gradio would answer with a pydantic validation dump).
    """
    import inspect

    from gradio.data_classes import FileData, ListFiles

    def names(block_fn) -> list[str]:
        try:
            params = list(inspect.signature(block_fn.fn).parameters)
        except (TypeError, ValueError):
            params = []
        return params + [f"argument {k + 1}" for k in range(len(params), len(block_fn.inputs))]

    def validate_inputs(block_fn, inputs):
        if not isinstance(inputs, list):
            return
        if len(inputs) < len(block_fn.inputs):
            inputs.extend([None] * (len(block_fn.inputs) - len(inputs)))
        for k, block in enumerate(block_fn.inputs):
            model = getattr(block, "data_model", None)
            value = inputs[k]
            if model is None or value is None or not isinstance(model, type):
                continue
            if issubclass(model, ListFiles):
                ok = isinstance(value, list) and all(isinstance(v, dict) for v in value)
                want = "a list of files"
            elif issubclass(model, FileData) or "Image" in model.__name__ or "File" in model.__name__:
                ok = isinstance(value, dict)
                want = "a file (a FileData object such as gradio_client's handle_file(...) makes)"
            else:
                continue
            if not ok:
                raise gr.Error(f"{names(block_fn)[k]}: expected {want}, got a {type(value).__name__}",
                               title="Wrong argument", print_exception=False)

    demo.validate_inputs = validate_inputs
