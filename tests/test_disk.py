"""Disk: 200 mixed requests left +43 MB and +550 files in /tmp, never removed.

Report exports and output images now live in bounded folders, what an earlier run left is removed at
start, and Gradio's cache is cleaned (``delete_cache``). (Gallery temp files and the directory fsync:
tests/test_gallery_safety.py.)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

import mbm.ui.voice_control_handlers as vc
from mbm.ui import common


def test_report_exports_are_kept_in_a_bounded_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(vc, "REPORTS", tmp_path / "mbm_reports")
    monkeypatch.setattr(vc, "_predict", lambda *args: object())
    if hasattr(vc, "_explained"):
        monkeypatch.setattr(vc, "_explained", lambda *args: object())

    def fake_export(result, folder, **kwargs):
        folder = Path(folder)
        folder.mkdir(parents=True)
        paths = {k: folder / f"report.{k}" for k in ("png", "html", "json")}
        for p in paths.values():
            p.write_bytes(b"x" * 1000)
        return paths

    monkeypatch.setattr(vc, "export_report", fake_export)
    for i in range(3 * vc.KEEP_REPORTS):
        files = vc.voice_control_report(None, None, "turn on the fan")
        assert all(Path(f).is_file() for f in files)  # the answer's own files exist when it is served
        old = time.time() - 1000 + i  # earlier exports are older, however fast this loop runs
        for folder in (tmp_path / "mbm_reports").iterdir():
            if folder != Path(files[0]).parent:
                os.utime(folder, (min(old, folder.stat().st_mtime), min(old, folder.stat().st_mtime)))
    kept = list((tmp_path / "mbm_reports").iterdir())
    assert len(kept) <= vc.KEEP_REPORTS, len(kept)  # before: one new mkdtemp folder per export, forever
    assert not list(tmp_path.glob("mbm_report_*"))


def test_output_images_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "OUTPUT_IMAGES", tmp_path / "out")
    monkeypatch.setattr(common, "KEEP_OUTPUT_IMAGES", 5)
    for i in range(12):
        common.image_file(np.full((4, 4, 3), i, np.uint8))
    assert len(list((tmp_path / "out").iterdir())) <= 6


def test_stale_outputs_of_an_earlier_run_are_removed_at_start(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(common, "OUTPUT_IMAGES", tmp_path / "mbm_output_images")
    for folder in ("mbm_report_abc", "mbm_reports/x", "mbm_output_images"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "f").write_text("left behind")
    (tmp_path / "unrelated").mkdir()
    common.remove_stale_outputs()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unrelated"]


def test_gradio_cache_is_cleaned():
    import app

    assert app.demo.delete_cache is not None
    every, age = app.demo.delete_cache
    assert every <= 600 and age <= 3600
