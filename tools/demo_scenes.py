"""The demo's scenes (``tools.demo_video``): what the recorded Chromium clicks through in each scenario, each step
with a caption drawn over the page where it covers neither the answer, the status nor the photo."""

from __future__ import annotations

import re
from pathlib import Path

from mbm.paths import PORTRAIT_ASSETS, VOICE_CONTROL_ASSETS

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
        """Wait until the element's text matches ``pattern`` (a regular expression)."""
        from playwright.sync_api import expect

        expect(self.page.locator(selector)).to_contain_text(re.compile(pattern), timeout=RESULT_TIMEOUT_MS)

    def example(self, caption: str, expect_text: str) -> None:
        """Click the voice-control example card named ``caption`` and wait for its answer."""
        self.page.get_by_role("button", name=caption, exact=True).click(timeout=60_000)
        self.wait_for_text("#vc-headline", re.escape(expect_text))

    def voice_control(self, short: bool) -> None:
        """The Voice control scenes (``short``: the first one only)."""
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
        """The Portrait scenes: a stranger at the webcam, enrolled from three photos, then recognised."""
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
