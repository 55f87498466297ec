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
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from mbm.paths import PORTRAIT_ASSETS, VOICE_CONTROL_ASSETS
from tools.bench import running_app

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 720}
RESULT_TIMEOUT_MS = 90_000
# The caption goes at the bottom of the screen, or at the top where it would cover the answer, the
# status or the photo (their parts on screen); returns the caption's box and whether it still covers one of them.
CAPTION_SCRIPT = """([text, watched]) => {
  let box = document.getElementById('mbm-demo-caption');
  if (!box) {
    box = document.createElement('div');
    box.id = 'mbm-demo-caption';
    box.style.cssText = 'position:fixed;left:50%;transform:translateX(-50%);z-index:99999;' +
      'max-width:90%;padding:12px 22px;border-radius:10px;background:rgba(20,20,28,.88);color:#fff;' +
      'font:600 22px/1.35 sans-serif;text-align:center;box-shadow:0 4px 18px rgba(0,0,0,.35)';
    document.body.appendChild(box);
  }
  box.textContent = text;
  const shown = watched.map(sel => document.querySelector(sel)).filter(el => el && el.offsetParent)
    .map(el => el.getBoundingClientRect()).filter(r => r.bottom > 0 && r.top < window.innerHeight);
  const covers = () => { const c = box.getBoundingClientRect();
    return shown.some(r => r.left < c.right && c.left < r.right && r.top < c.bottom && c.top < r.bottom); };
  for (const edge of ['bottom', 'top']) {
    box.style.top = box.style.bottom = '';
    box.style[edge] = '16px';
    if (!covers()) break;
  }
  const c = box.getBoundingClientRect();
  return {caption: [c.left, c.top, c.right, c.bottom], covers: covers()};
}"""
# What a frame shows, read from the page: the answer box's text and where it is, the photo input's file name
# and where it is (None where absent or off screen).
STATE_SCRIPT = """([answerSel, photoSel]) => {
  const onScreen = el => { if (!el || !el.offsetParent) return null; const r = el.getBoundingClientRect();
    return (r.bottom > 0 && r.top < window.innerHeight && r.width > 0) ? [r.left, r.top, r.right, r.bottom] : null; };
  const answer = document.querySelector(answerSel), img = document.querySelector(photoSel + ' img');
  const src = img ? decodeURIComponent(img.getAttribute('src') || '') : '';
  return {answer: answer ? answer.innerText.trim() : null, answer_box: onScreen(answer),
          photo: src ? src.split('/').pop().split('?')[0] : null, photo_box: onScreen(img)};
}"""
WATCHED = ["#vc-headline", "#vc-status", "#pt-headline", "#pt-status"]
# Scroll so that the answer is on screen below the caption's top place, with the photo input beside it as far
# as the screen allows (at 1280x720 the photo starts below the fold).
BOTH_IN_VIEW_SCRIPT = """([answerSel, photoSel]) => {
  const a = document.querySelector(answerSel).getBoundingClientRect();
  const p = document.querySelector(photoSel).getBoundingClientRect();
  const dy = a.top < 120 ? a.top - 120 : Math.min(Math.max(0, p.bottom - window.innerHeight + 12), a.top - 120);
  if (dy !== 0) window.scrollBy({top: dy, behavior: 'instant'});
}"""


def webcam_video(face: Path, out: Path) -> Path:
    """A 2 s Y4M video of a still photo, which Chromium loops as its fake webcam."""
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-loop", "1", "-i", str(face), "-t", "2", "-r", "10",
                    "-vf", "scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


class Demo:
    """The page being recorded, the steps of the walk-through, and what each captioned step showed.

    ``steps`` (written beside the video as ``<video>.steps.json`` with a screenshot per step): the
    caption, when it was shown (seconds into the video), the answer box's text and the photo input's
    file name as the page had them, the boxes of both and of the caption, and what the step expected.
    """

    def __init__(self, page, pause_ms: int, shots: Path | None = None):
        import time

        self.page, self.pause_ms, self.shots, self.steps = page, pause_ms, shots, []
        self.t0 = time.monotonic()  # the video starts with the page

    def caption(self, text: str, hold: float = 1.0, answer: str | None = None, photo: str | None = None,
                where: tuple[str, str] = ("#vc-headline", "#vc-image")) -> None:
        """Show ``text`` for ``hold`` pauses; the answer box (``where[0]``) must then contain ``answer`` and
        the photo input (``where[1]``) show the file ``photo`` (each unchecked when None)."""
        import time

        if answer is not None:  # on screen with the photo, below the caption's top place
            self.page.wait_for_timeout(800)  # the page's own scroll to a new answer is over
            self.page.evaluate(BOTH_IN_VIEW_SCRIPT, list(where))
            self.page.wait_for_timeout(300)
        placed = self.page.evaluate(CAPTION_SCRIPT, [text, WATCHED + [f"{where[1]} img"]])
        self.page.wait_for_timeout(200)  # painted, and in the video
        state = self.page.evaluate(STATE_SCRIPT, list(where))
        step = {"caption": text, "t": time.monotonic() - self.t0, **placed, **state, "expect_answer": answer,
                "expect_photo": photo}
        if self.shots is not None:
            step["shot"] = f"step{len(self.steps):02d}.png"
            self.page.screenshot(path=str(self.shots / step["shot"]))
        self.steps.append(step)
        if placed["covers"]:
            raise RuntimeError(f"the caption {text!r} covers the answer, the status or the photo")
        if answer is not None and (state["answer"] is None or answer not in state["answer"]):
            raise RuntimeError(f"at {text!r} the answer shows {state['answer']!r}, expected {answer!r}")
        if photo is not None and state["photo"] != photo:
            raise RuntimeError(f"at {text!r} the photo is {state['photo']!r}, expected {photo!r}")
        self.page.wait_for_timeout(max(0, int(self.pause_ms * hold) - 200))

    def wait_for_text(self, selector: str, pattern: str) -> None:
        from playwright.sync_api import expect

        expect(self.page.locator(selector)).to_contain_text(re.compile(pattern), timeout=RESULT_TIMEOUT_MS)

    def example(self, caption: str, expect_text: str) -> None:
        self.page.get_by_role("button", name=caption, exact=True).click(timeout=60_000)
        self.wait_for_text("#vc-headline", re.escape(expect_text))

    def voice_control(self, short: bool) -> None:
        import json

        from mbm.scenarios.voice_control.spec import display_name

        examples = {e["caption"]: e for e in json.loads((VOICE_CONTROL_ASSETS / "examples.json").read_text("utf-8"))}
        lamp, player = examples["'up' + a lamp → brighter"], examples["the same 'up' + a music player → volume up"]
        page = self.page
        page.locator("#vc-run").wait_for(timeout=60_000)
        self.caption("Voice control: a spoken command + a photo of the device (+ typed text, if you like)",
                     answer="No answer yet")
        self.example(lamp["caption"], display_name(lamp["expect"]))
        self.caption("'up' + a lamp → brighter. The chart shows how much each input counted.", 1.5,
                     answer=display_name(lamp["expect"]), photo=lamp["image"])
        if short:
            return
        self.example(player["caption"], display_name(player["expect"]))
        self.caption("The same 'up' with a music player → volume up: the photo decides what the word does.", 1.5,
                     answer=display_name(player["expect"]), photo=player["image"])
        page.locator("#vc-use-audio input[type=checkbox]").uncheck()
        self.wait_for_text("#vc-status", r"audio 0 \(absent\)")
        self.wait_for_text("#vc-headline", "Not sure")
        self.caption("Switch the audio off: the photo alone cannot tell the command, and the answer says so.", 1.5,
                     answer="music player", photo=player["image"])
        page.locator("#vc-use-audio input[type=checkbox]").check()
        self.wait_for_text("#vc-headline", re.escape(display_name(player["expect"])))
        page.locator("#vc-clear").click()  # the page's Clear (the audio box's × is also named "Clear")
        self.wait_for_text("#vc-headline", "No answer yet")
        audio, image = page.locator("#vc-audio"), page.locator("#vc-image")
        image.locator("input[type=file]").set_input_files(str(VOICE_CONTROL_ASSETS / "lamp.jpg"))
        image.locator("img").first.wait_for(timeout=30_000)
        self.caption("Now speak: the microphone records 'up' …", answer="No answer yet", photo="lamp.jpg")
        audio.locator("button.record-button").click()
        page.wait_for_timeout(2500)
        audio.locator("button.stop-button").click()
        from playwright.sync_api import expect

        expect(audio.locator("a[data-testid=download-link]")).to_have_attribute(
            "href", re.compile(r"/gradio_api/file="), timeout=30_000)
        page.locator("#vc-run").click()
        self.wait_for_text("#vc-headline", "lamp →")
        self.caption("… and the lamp photo makes it 'brighter'. Below: where in each input the answer comes from.", 1.5,
                     answer="lamp →", photo="lamp.jpg")
        page.locator("#vc-explanation").scroll_into_view_if_needed()
        self.caption("Occlusion maps: what the answer loses when each part of an input is masked.", 1.5)

    def portrait(self) -> None:
        page = self.page
        where = ("#pt-headline", "#pt-face")
        page.evaluate("window.scrollTo(0, 0)")
        page.get_by_role("tab", name="Portrait recognition").click(timeout=60_000)
        face = page.locator("#pt-face")
        self.caption("Portrait recognition: who is this, among the enrolled people, or unknown?",
                     answer="No answer yet", where=where)
        face.get_by_label("Capture from camera").click()
        face.get_by_text("Click to Access Webcam").click()
        page.wait_for_timeout(1500)
        face.get_by_label("capture photo").click()
        page.wait_for_timeout(1000)
        page.locator("#pt-run").click()
        self.wait_for_text("#pt-headline", "Not a person in the gallery")
        self.caption("A stranger at the webcam → unknown: nobody in the gallery is close enough.", 1.5,
                     answer="Not a person in the gallery", where=where)
        page.locator("#pt-enrol-name textarea, #pt-enrol-name input").first.fill("Dana")
        photos = sorted((PORTRAIT_ASSETS / "faces" / "orl" / "s18").glob("*.pgm"))[:3]
        page.locator("#pt-enrol-photos input[type=file]").set_input_files([str(p) for p in photos])
        page.locator("#pt-enrol").scroll_into_view_if_needed()
        self.caption("Enrol them as 'Dana' from three photos: no retraining.", answer="Not a person in the gallery",
                     where=where)
        page.locator("#pt-enrol").click()
        self.wait_for_text("#pt-enrol-status", "Dana")
        page.evaluate("window.scrollTo(0, 0)")
        page.locator("#pt-run").click()
        self.wait_for_text("#pt-headline", "Dana")
        self.caption("The same webcam photo → Dana, recognised at once.", 2.0, answer="Dana", where=where)


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
