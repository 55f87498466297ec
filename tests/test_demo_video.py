"""The demo records itself: a short run of ``python -m mbm.demo_video`` writes a video that plays."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
if not IN_CI and (not Path("/usr/bin/chromium").exists() or shutil.which("ffprobe") is None):
    pytest.skip("needs Debian's chromium and ffmpeg (the test runs, never skips, when CI=true)",
                allow_module_level=True)


def test_a_short_demo_recording_plays(tmp_path):
    from mbm.demo_video import duration_seconds, main

    video, gif, frame = tmp_path / "demo.webm", tmp_path / "demo.gif", tmp_path / "frame.png"
    before = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    main(["--out", str(video), "--gif", str(gif), "--frame", str(frame), "--short", "--pause-ms", "600"])
    assert duration_seconds(video) > 2.0  # ffprobe reads a real duration
    assert video.read_bytes()[:4] == b"\x1aE\xdf\xa3"  # the WebM (Matroska) signature
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a") and frame.read_bytes()[:4] == b"\x89PNG"
    assert os.environ.get("PLAYWRIGHT_BROWSERS_PATH") == before  # the recorder's setting does not leak
