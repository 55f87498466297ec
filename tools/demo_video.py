"""Record a demo of the app by itself: a real Chromium walks through both scenarios, with captions.

    python -m tools.demo_video --out demo.webm --gif docs/images/demo.gif --frame docs/images/demo.png
    python -m tools.demo_video --out /tmp/short.webm --short      # the first scene only (the test runs this)

It starts ``python app.py`` on a free loopback port (``tools.bench.running_app``, with a throwaway
gallery folder), launches
Debian's Chromium with a fake microphone (``assets/voice_control/mic_up.wav``) and a fake webcam
(a still of a face from ``assets/portrait/examples``, turned into a Y4M video with FFmpeg), and
records the page with Playwright while it clicks through: the *up* examples (the photo decides
what the word does), switching the audio off, a spoken command through the microphone, then a
stranger at the webcam (unknown), enrolling them from three photos, and recognising them.
Each step gets a caption drawn over the page. FFmpeg makes the GIF and the still frame.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from mbm.paths import PORTRAIT_ASSETS, VOICE_CONTROL_ASSETS
from tools.bench import running_app
from tools.demo_scenes import Demo

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 720}


def webcam_video(face: Path, out: Path) -> Path:
    """A 2 s Y4M video of a still photo, which Chromium loops as its fake webcam."""
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-loop", "1", "-i", str(face), "-t", "2", "-r", "10",
                    "-vf", "scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def use_system_ffmpeg(folder: Path) -> Path:
    """Let Playwright's video recorder run Debian's FFmpeg (never ``playwright install``).

    Playwright looks for its recorder at ``$PLAYWRIGHT_BROWSERS_PATH/ffmpeg-<revision>/ffmpeg-linux``
    (the revision is in its ``browsers.json``); a link there to ``/usr/bin/ffmpeg`` serves, since the
    recorder only asks FFmpeg to encode JPEG frames from a pipe to VP8.
    """
    import json

    import playwright

    listing = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    revision = next(b["revision"] for b in json.loads(listing.read_text())["browsers"] if b["name"] == "ffmpeg")
    target = folder / f"ffmpeg-{revision}" / "ffmpeg-linux"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(shutil.which("ffmpeg"))
    return folder


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def record(out: Path, short: bool = False, pause_ms: int = 1800) -> Path:
    """Record the walk-through into ``out`` (.webm); returns it."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists() or shutil.which("ffmpeg") is None:
        raise SystemExit(f"needs {CHROMIUM} and ffmpeg (Debian: apt-get install chromium ffmpeg)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mbm_demo_") as tmp:
        tmp = Path(tmp)
        camera = webcam_video(PORTRAIT_ASSETS / "examples" / "s18_stranger.png", tmp / "webcam.y4m")
        before = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
        os.environ["PLAYWRIGHT_BROWSERS_PATH"] = str(use_system_ffmpeg(tmp / "playwright"))  # read at driver start
        with running_app(env={"MBM_GALLERY_DIR": str(tmp / "gallery")}) as (_, url, _), sync_playwright() as p:
            _restore_env("PLAYWRIGHT_BROWSERS_PATH", before)
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-audio-capture={VOICE_CONTROL_ASSETS / 'mic_up.wav'}",
                f"--use-file-for-fake-video-capture={camera}"])
            context = browser.new_context(viewport=VIEWPORT, record_video_dir=str(tmp / "video"),
                                          record_video_size=VIEWPORT)
            page = context.new_page()
            steps = out.with_suffix(".steps")  # a screenshot per captioned step, and steps.json
            shutil.rmtree(steps, ignore_errors=True)
            steps.mkdir()
            demo = Demo(page, pause_ms, shots=steps)
            try:
                page.goto(url)
                demo.voice_control(short)
                if not short:
                    demo.portrait()
            finally:
                context.close()  # writes the video
                browser.close()
                (steps / "steps.json").write_text(json.dumps(demo.steps, indent=1), encoding="utf-8")
            shutil.move(page.video.path(), out)
    return out


def make_gif(video: Path, gif: Path, width: int = 640, fps: int = 4) -> Path:
    """A palette-optimised GIF of ``video``."""
    gif.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-i", str(video), "-vf",
                    (f"fps={fps},scale={width}:-1:flags=lanczos,split[a][b];[a]palettegen=max_colors=128[p];"
                     "[b][p]paletteuse=dither=bayer"), str(gif)], check=True)
    return gif


def duration_seconds(video: Path) -> float:
    """The video's duration by ffprobe (0 when it has none)."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                            "default=noprint_wrappers=1:nokey=1", str(video)], capture_output=True, text=True,
                           check=False)
    try:
        return float(probe.stdout.strip())
    except ValueError:
        return 0.0


def save_frame(video: Path, seconds: float, png: Path) -> Path:
    """One frame of ``video`` at ``seconds`` as a PNG (the README's picture)."""
    png.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-ss", f"{seconds:.2f}", "-i", str(video), "-frames:v", "1",
                    str(png)], check=True)
    return png


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the video (.webm)")
    parser.add_argument("--gif", type=Path, help="also write a GIF")
    parser.add_argument("--frame", type=Path, help="also write one frame as PNG")
    parser.add_argument("--frame-at", type=float, default=9.0, help="seconds into the video of that frame")
    parser.add_argument("--short", action="store_true", help="the first scene only")
    parser.add_argument("--pause-ms", type=int, default=1800, help="how long each caption stays")
    args = parser.parse_args(argv)
    video = record(args.out, short=args.short, pause_ms=args.pause_ms)
    seconds = duration_seconds(video)
    print(f"wrote {video} ({seconds:.1f} s)")
    if args.gif:
        print(f"wrote {make_gif(video, args.gif)}")
    if args.frame:
        print(f"wrote {save_frame(video, min(args.frame_at, max(0.0, seconds - 0.5)), args.frame)}")


if __name__ == "__main__":
    main()
