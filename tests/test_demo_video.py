"""The demo records itself: a short run of ``python -m tools.demo_video`` writes a video that plays, and its
frames show what each captioned step promises: the expected answer beside the expected photo, with the
caption covering neither the answer nor the status."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
if not IN_CI and (not Path("/usr/bin/chromium").exists() or shutil.which("ffprobe") is None):
    pytest.skip("needs Debian's chromium and ffmpeg (the test runs, never skips, when CI=true)",
                allow_module_level=True)

SAME = 8.0  # mean grey-level difference (0-255) of a region between a video frame and the page as it was


def _frame(video: Path, seconds: float, png: Path) -> np.ndarray:
    from PIL import Image

    subprocess.run(["ffmpeg", "-y", "-v", "error", "-ss", f"{seconds:.2f}", "-i", str(video), "-frames:v", "1",
                    str(png)], check=True)
    return np.asarray(Image.open(png).convert("L"), dtype=float)


def _region(picture: np.ndarray, box) -> np.ndarray:
    left, top, right, bottom = (round(v) for v in box)
    return picture[max(top, 0):min(bottom, picture.shape[0]), max(left, 0):min(right, picture.shape[1])]


def _differs(a: np.ndarray, b: np.ndarray, box) -> float:
    return float(np.abs(_region(a, box) - _region(b, box)).mean())


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_a_short_demo_recording_plays_and_its_frames_show_each_steps_answer(tmp_path):
    from PIL import Image

    from tools.demo_video import duration_seconds, main

    video, gif, frame = tmp_path / "demo.webm", tmp_path / "demo.gif", tmp_path / "frame.png"
    before = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    main(["--out", str(video), "--gif", str(gif), "--frame", str(frame), "--short", "--pause-ms", "600"])
    assert duration_seconds(video) > 2.0  # ffprobe reads a real duration
    assert video.read_bytes()[:4] == b"\x1aE\xdf\xa3"  # the WebM (Matroska) signature
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a") and frame.read_bytes()[:4] == b"\x89PNG"
    assert os.environ.get("PLAYWRIGHT_BROWSERS_PATH") == before  # the recorder's setting does not leak

    # What the page showed at each captioned step (the recorder checked the answer and the photo there),
    # and the video's frame at that moment.
    folder = video.with_suffix(".steps")
    steps = json.loads((folder / "steps.json").read_text(encoding="utf-8"))
    assert len(steps) >= 2 and any(s["expect_photo"] for s in steps), steps
    shots = [np.asarray(Image.open(folder / s["shot"]).convert("L"), dtype=float) for s in steps]
    for k, step in enumerate(steps):
        if step["expect_answer"] is not None:
            assert step["expect_answer"] in step["answer"], step
            assert step["answer_box"] is not None, f"the answer is off screen at {step['caption']!r}"
        if step["expect_photo"] is not None:
            assert step["photo"] == step["expect_photo"] and step["photo_box"] is not None, step
        for box in (step["answer_box"], step["photo_box"]):
            assert box is None or not _overlap(step["caption"], box), f"the caption covers {box}: {step}"
        # the frame nearest the page as it was (the video's clock runs up to half a second off the page's)
        boxes = [box for box in (step["answer_box"], step["photo_box"]) if box is not None]
        frames = [_frame(video, max(0.0, step["t"] + dt), tmp_path / f"frame{k}.png") for dt in (-0.5, -0.25, 0, 0.2)]
        shown = min(frames, key=lambda f: sum(_differs(f, shots[k], box) for box in boxes) if boxes else 0.0)
        for box in boxes:
            assert _differs(shown, shots[k], box) < SAME, (step["caption"], box)
        # and a frame is told apart from a step with another answer
        for j, other in enumerate(steps):
            if step["answer_box"] and other["answer"] != step["answer"]:
                assert _differs(shown, shots[j], step["answer_box"]) > 2 * SAME, (step["caption"], other["caption"])
