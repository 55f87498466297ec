"""The code style the team keeps (pyproject.toml's ruff settings), checked on every file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    # ruff comes from tests/requirements.txt, as pytest does
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                         check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_the_readme_is_a_front_page():
    """What it is, a picture, how to run it, headline numbers, limits, credits: 200 lines at most (lab notes go
    to docs/)."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, len(lines)
    for heading in ("## Run it", "## Headline numbers", "## Limits, honestly", "## Credits and licences"):
        assert heading in lines


def test_every_relative_link_in_the_docs_points_to_a_file():
    """README.md and docs/*.md: every relative Markdown link (outside code) names a file or folder that exists."""
    import re

    link = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        fenced = False
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
            if fenced or line.startswith("    "):
                continue
            for target in link.findall(re.sub(r"`[^`]*`", "", line)):
                if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                    continue  # a web address, mailto:, or a heading on the same page
                if not (page.parent / target.split("#")[0]).exists():
                    broken.append(f"{page.relative_to(ROOT)}:{number}: {target}")
    assert broken == []


MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 300


def test_no_function_or_module_is_too_long():
    """Every function fits on a screen (80 lines at most, decorators not counted) and every module holds one idea
    (300 lines at most): the app, the library and the tools."""
    import ast

    files = sorted([*(ROOT / "mbm").rglob("*.py"), *(ROOT / "tools").rglob("*.py"), ROOT / "app.py"])
    too_long = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT).as_posix()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines (module)")
        for node in ast.walk(ast.parse(text, filename=name)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {lines} lines (function)")
    assert not too_long, "\n".join(too_long)
