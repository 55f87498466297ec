"""Layers point one way, read from every module's imports (no module is run):

- the shared core (every ``mbm`` module outside ``mbm/scenarios`` and ``mbm/ui``, but the command-line entries
  that dispatch through the registry) never imports a scenario or the UI;
- a scenario never imports another scenario, nor the UI;
- the UI's shared modules reach scenarios only through the registry (``mbm.scenarios``); a scenario's own tab
  (``mbm/ui/<scenario>*.py``) may import that scenario.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = {"mbm.cli", "mbm.train", "mbm.evaluate", "tools.bench", "tools.demo_video"}  # commands over the registry
SCENARIO_NAMES = sorted(p.name for p in (ROOT / "mbm" / "scenarios").iterdir() if (p / "__init__.py").is_file())


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every ``mbm`` module a file imports, at any depth (function-level imports too)."""
    name, out = module_name(path), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names  # "from mbm import maps": the module mbm.maps
                       if is_module(f"{base}.{a.name}"))
    return {m for m in out if m == "mbm" or m.startswith("mbm.")}


def is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def scenario_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["mbm", "scenarios"] and len(parts) > 2 and parts[2] in SCENARIO_NAMES:
        return parts[2]
    if parts[:2] == ["mbm", "ui"] and len(parts) > 2:
        return next((s for s in SCENARIO_NAMES if parts[2] == s or parts[2].startswith(s + "_")), None)
    return None


def layer(module: str) -> str:
    if module in ENTRIES:
        return "entry"
    if module == "mbm.scenarios":
        return "registry"
    if module.startswith("mbm.scenarios."):
        return "scenario"
    if module.startswith("mbm.ui"):
        return "tab" if scenario_of(module) else "ui"
    return "core"


def violations() -> list[str]:
    out = []
    for path in sorted((ROOT / "mbm").rglob("*.py")):
        me = module_name(path)
        mine, own = layer(me), scenario_of(me)
        for dep in sorted(imports(path)):
            theirs, their_scenario = layer(dep), scenario_of(dep)
            bad = (
                (mine in ("core", "registry") and theirs in ("scenario", "tab", "ui"))
                or (mine in ("scenario", "tab") and their_scenario not in (None, own))
                or (mine == "scenario" and theirs in ("tab", "ui"))
                or (mine == "ui" and theirs in ("scenario", "tab"))
            )
            if bad:
                out.append(f"{me} ({mine}) imports {dep} ({theirs})")
    return out


def test_layers_point_one_way():
    assert violations() == []


def test_the_check_sees_what_it_should():
    """The rules catch each kind of wrong import (so an empty list above means something)."""
    assert layer("mbm.preprocess") == "core" and layer("mbm.scenarios") == "registry"
    assert layer("mbm.scenarios.portrait.train") == "scenario" and layer("mbm.ui.common") == "ui"
    assert scenario_of("mbm.ui.voice_control_answer") == "voice_control" and layer("mbm.ui.retrieval") == "tab"
    assert "mbm.scenarios" in imports(ROOT / "mbm" / "ui" / "models.py")
    assert "mbm.scenarios.voice_control.spec" in imports(ROOT / "mbm" / "scenarios" / "voice_control" / "evaluate.py")
    relative = ROOT / "mbm" / "scenarios" / "portrait" / "train.py"
    assert all(m.startswith("mbm") for m in imports(relative))
