"""Reading a retrieval index file that may be hostile (an uploaded or hand-made ``.npz``).

Nothing is decompressed before it is checked: the manifest's declared size, then every array's declared shape
and dtype (read from its ``.npy`` header inside the zip) against the manifest's item count and the size
bounds of :mod:`mbm.limits`; item paths must be relative and stay under the collection's folder.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from mbm.errors import InputError
from mbm.scenarios.retrieval.index import ARRAYS, FORMAT, MAX_ITEMS


def check_open_vocabulary(arrays: dict, path: Path) -> None:
    """The concept ids name ImageNet classes and the text vectors are MiniLM's width (else a message)."""
    from mbm.scenarios.retrieval.encoders import N_CLASSES, TEXT_DIM

    ids = arrays["concept_ids"]
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= N_CLASSES):
        raise InputError(f"{path}: concept_ids name classes outside 0..{N_CLASSES - 1}")
    if arrays["text_vec"].shape[1] != TEXT_DIM:
        raise InputError(f"{path}: text_vec is {arrays['text_vec'].shape[1]} wide; the text model's vectors are "
                         f"{TEXT_DIM}")


def member_header(z: zipfile.ZipFile, name: str) -> tuple[tuple, np.dtype]:
    """The declared shape and dtype of ``name``.npy in the zip, read from its header alone."""
    from numpy.lib import format as npy

    with z.open(f"{name}.npy") as f:
        version = npy.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = npy.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = npy.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy format {version}")
    if dtype.hasobject:
        raise ValueError("object arrays")
    return tuple(shape), dtype


def read_member(z: zipfile.ZipFile, name: str) -> np.ndarray:
    """``name``.npy from the zip, plain arrays only (no pickles); check its header first."""
    from numpy.lib import format as npy

    with z.open(f"{name}.npy") as f:
        return npy.read_array(f, allow_pickle=False)


def read_manifest(z: zipfile.ZipFile, path: Path) -> dict:
    """The index's JSON manifest, its size bounded before it is read and every field's type checked."""
    from mbm.limits import MAX_MANIFEST_BYTES, size_text

    shape, dtype = member_header(z, "manifest")
    if dtype != np.uint8 or len(shape) != 1:
        raise InputError(f"{path}: the manifest is not a byte array")
    if shape[0] > MAX_MANIFEST_BYTES:
        raise InputError(f"{path}: the manifest declares {size_text(shape[0])}; at most "
                         f"{size_text(MAX_MANIFEST_BYTES)} are read (MBM_MAX_MANIFEST_MB)")
    manifest = json.loads(read_member(z, "manifest").tobytes().decode())
    if isinstance(manifest, dict) and manifest.get("format") == "mbm-retrieval-index-1":
        raise InputError(f"{path} was built before search knew every ImageNet concept (index format 1); rebuild it "
                         f"with `python -m mbm.scenarios.retrieval.index build FOLDER --out {path}`")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path} is not a retrieval index of format {FORMAT}")
    items = manifest.get("items")
    if not isinstance(items, list):
        raise InputError(f"{path}: the manifest's items are not a list")
    if len(items) > MAX_ITEMS:
        raise InputError(f"{path}: {len(items)} items; an index holds at most {MAX_ITEMS}")
    for k, it in enumerate(items):
        problem = item_problem(it)
        if problem:
            raise InputError(f"{path}: item {k} {problem}")
    if not isinstance(manifest.get("root"), str) or not isinstance(manifest.get("root_relative"), (str, type(None))):
        raise InputError(f"{path}: the manifest's root is not a folder name")
    if not isinstance(manifest.get("checkpoint", ""), str):
        raise InputError(f"{path}: the manifest's checkpoint is not text")
    skipped = manifest.get("skipped", [])
    if not isinstance(skipped, list) or not all(isinstance(x, str) for x in skipped):
        raise InputError(f"{path}: the manifest's skipped list is not a list of text")
    return manifest


def item_problem(it) -> str | None:
    """Why a manifest item cannot be used (None if it can): its path must stay under the collection."""
    if not isinstance(it, dict):
        return "is not an object"
    p = it.get("path")
    if not isinstance(p, str) or not p or "\0" in p:
        return "has no file path"
    parts = p.replace("\\", "/").split("/")
    if p.startswith(("/", "\\")) or Path(p).is_absolute() or ":" in parts[0] or ".." in parts:
        return f"names a path outside the collection's folder ({p[:80]!r}); item paths must be relative"
    for key in ("caption", "transcript"):
        if not isinstance(it.get(key, ""), str):
            return f"has a {key} that is not text"
    notes = it.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(x, str) for x in notes):
        return "has notes that are not a list of text"
    return None


def check_arrays(z: zipfile.ZipFile, n: int, path: Path) -> None:
    """Every array's declared shape and dtype against the item count and the size bounds, before any is read."""
    from mbm.limits import MAX_INDEX_BYTES, MAX_INDEX_DIM, size_text

    total, widths = 0, {}
    for name in ARRAYS:
        shape, dtype = member_header(z, name)
        if name in ("extra_mask", "name_mask"):
            ok = dtype == np.bool_ and shape == (n,)
            want = f"({n},) bool"
        elif name == "concept_ids":
            ok = dtype == np.int16 and len(shape) == 2 and shape[0] == n and 1 <= shape[1] <= 1000
            want = f"({n}, 1..1000) int16"
            widths[name] = shape[1] if len(shape) == 2 else None
        else:
            ok = dtype == np.float32 and len(shape) == 2 and shape[0] == n and 1 <= shape[1] <= MAX_INDEX_DIM
            want = f"({n}, 1..{MAX_INDEX_DIM}) float32"
            widths[name] = shape[1] if len(shape) == 2 else None
        if not ok:
            raise InputError(f"{path}: {name} is declared {shape} {dtype}, but the manifest's {n} items need {want}")
        total += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if widths["concept_ids"] != widths["concept_p"]:
        raise InputError(f"{path}: concept_ids and concept_p differ in width")
    if widths["text_vec"] != widths["name_vec"]:
        raise InputError(f"{path}: text_vec and name_vec differ in width")
    if widths["photo_sem"] != widths["extra_sem"]:
        raise InputError(f"{path}: photo_sem and extra_sem differ in width ({widths['photo_sem']} vs "
                         f"{widths['extra_sem']})")
    if total > MAX_INDEX_BYTES:
        raise InputError(f"{path}: its arrays declare {size_text(total)}; at most {size_text(MAX_INDEX_BYTES)} "
                         "are read (MBM_MAX_INDEX_MB)")

