"""API arguments, checked: every value a handler gets is type- and size-checked with a message that
names the parameter, and every handler is guarded, so a visitor or API client gets a message, never
a traceback."""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import gradio as gr

from mbm.paths import ROOT


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


def file_values(value, param: str, max_files: int) -> list:
    """A multiple-file input (a list of FileData dicts, or paths from an example) as paths/bytes."""
    if value is None:
        return []
    if isinstance(value, (str, dict)):  # one file where a list was expected (e.g. from an API client)
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ParameterError(f"{param}: expected a list of files, got a {type(value).__name__}")
    if len(value) > max_files:
        raise ParameterError(f"{param}: give at most {max_files} files")
    return [f for f in (file_value(v, f"{param}[{k}]") for k, v in enumerate(value)) if f is not None]


def text_value(value, param: str, max_chars: int) -> str | None:
    """A text argument: None/empty -> None; not a string or longer than ``max_chars`` -> ParameterError."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParameterError(f"{param}: expected text, got a {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not text, and the reply could not be encoded
        raise ParameterError(f"{param}: not valid Unicode text") from None
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
            except Exception:  # logged here, a plain message for the client
                logging.getLogger("mbm.app").exception("unexpected error in %s", fn.__name__)
                raise gr.Error("something went wrong on the server while processing this request; it was "
                               "logged. Try again or with another file.", title=title,
                               print_exception=False) from None
        return handler
    return wrap


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
                stray = next((j for j, v in enumerate(value) if isinstance(v, dict) and not v.get("path")), None) \
                    if ok else None
                if stray is not None:  # a URL (data: or other) where Gradio needs an uploaded file's path
                    raise gr.Error(f"{names(block_fn)[k]}[{stray}]: give an uploaded file (gradio_client's "
                                   "handle_file(...) uploads one); URLs are not fetched, and a list of files "
                                   "takes no data: URLs", title="Wrong argument", print_exception=False)
            elif issubclass(model, FileData) or "Image" in model.__name__ or "File" in model.__name__:
                ok = isinstance(value, dict)
                want = "a file (a FileData object such as gradio_client's handle_file(...) makes)"
            else:
                continue
            if not ok:
                raise gr.Error(f"{names(block_fn)[k]}: expected {want}, got a {type(value).__name__}",
                               title="Wrong argument", print_exception=False)

    demo.validate_inputs = validate_inputs
