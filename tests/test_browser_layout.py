"""What a visitor sees first, in light and dark, on a desktop and a phone (issue 19), in a real Chromium.

- the first example is visible without scrolling at 1280x720, with a loaded thumbnail of its photo;
- the weights chart's text has a WCAG AA contrast (>= 4.5) against what is behind it, measured from
  the rendered colours, in the light and the dark theme;
- in the dark theme every figure (the explanation's and the Evaluation tab's) has text with that
  contrast and no white background box;
- on a phone, after tapping an example the answer is in view, and every tab is reachable (no tab hidden
  behind an overflow menu).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
CHROMIUM = "/usr/bin/chromium"
if not IN_CI and not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (the test runs, never skips, when CI=true)", allow_module_level=True)
from playwright.sync_api import expect, sync_playwright  # noqa: E402

FIRST_EXAMPLE = "'up' + a lamp → brighter"
RESULT_TIMEOUT_MS = 90_000

# The chart's text colour and the first opaque background behind it, as the browser rendered them.
COLOURS_JS = """() => {
  const text = document.querySelector('#vc-weights svg text');
  let el = text, bg = 'rgba(0, 0, 0, 0)';
  while (el && (bg === 'rgba(0, 0, 0, 0)' || bg === 'transparent')) {
    el = el.parentElement;
    if (el) bg = getComputedStyle(el).backgroundColor;
  }
  return [getComputedStyle(text).fill, bg];
}"""


def _rgb(css: str) -> tuple[float, ...]:
    return tuple(float(x) for x in css[css.index("(") + 1:css.index(")")].split(",")[:3])


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two CSS rgb() colours."""
    def luminance(rgb):
        c = [v / 255 for v in rgb]
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
    hi, lo = sorted((luminance(_rgb(a)), luminance(_rgb(b))), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_contrast_formula_on_known_pairs():
    assert contrast("rgb(0, 0, 0)", "rgb(255, 255, 255)") == pytest.approx(21.0)
    assert contrast("rgb(118, 118, 118)", "rgb(255, 255, 255)") == pytest.approx(4.54, abs=0.01)


@pytest.fixture(scope="module")
def chromium():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_desktop_first_screen_and_chart_contrast(chromium, app_url, scheme):
    page = chromium.new_page(viewport={"width": 1280, "height": 720}, color_scheme=scheme)
    try:
        page.goto(f"{app_url}?__theme={scheme}", wait_until="domcontentloaded")
        example = page.get_by_role("button", name=FIRST_EXAMPLE, exact=True)
        expect(example).to_be_visible(timeout=60_000)
        box = example.bounding_box()
        assert box["y"] + box["height"] <= 720, f"the first example starts below the fold: {box}"
        thumbnail = example.locator("img")
        expect(thumbnail).to_be_visible()
        size = thumbnail.evaluate("img => [img.complete && img.naturalWidth, img.getBoundingClientRect().width]")
        assert size[0] > 0, "the first example's thumbnail did not load"
        assert 40 <= size[1] <= 96, f"the thumbnail is {size[1]} px wide: small, 64-96 px, expected"
        example.click()
        expect(page.locator("#vc-status")).to_contain_text("brighter", timeout=RESULT_TIMEOUT_MS)
        fill, background = page.evaluate(COLOURS_JS)
        ratio = contrast(fill, background)
        assert ratio >= 4.5, f"{scheme}: chart text {fill} on {background}: contrast {ratio:.2f} < 4.5"
    finally:
        page.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_phone_answer_in_view_and_every_tab_reachable(chromium, app_url, scheme):
    page = chromium.new_page(viewport={"width": 390, "height": 844}, color_scheme=scheme, is_mobile=True,
                             has_touch=True)
    try:
        page.goto(f"{app_url}?__theme={scheme}", wait_until="domcontentloaded")
        for title in ("Voice control", "Portrait recognition", "Evaluation"):
            expect(page.get_by_role("tab", name=title)).to_be_visible(timeout=60_000)
        page.get_by_role("button", name=FIRST_EXAMPLE, exact=True).tap(timeout=60_000)
        status = page.locator("#vc-status")
        expect(status).to_contain_text("brighter", timeout=RESULT_TIMEOUT_MS)
        page.wait_for_timeout(1500)  # the scroll to the answer is animated
        answer = page.locator("#vc-action")
        assert answer.bounding_box() is not None
        top = page.evaluate("() => document.querySelector('#vc-action').getBoundingClientRect().top")
        assert 0 <= top < 844, f"the answer is off screen after tapping an example (top at {top:.0f} px)"
    finally:
        page.close()


# Each figure's text colours (heat-map labels, drawn on a fixed colour, excepted), the first opaque
# background behind the figure, and its shapes that cover over a tenth of it with their fill.
FIGURE_JS = """sel => {
  const svg = document.querySelector(`${sel} svg[role=img]`);
  if (!svg) return null;
  let el = svg, bg = 'rgba(0, 0, 0, 0)';
  while (el && (bg === 'rgba(0, 0, 0, 0)' || bg === 'transparent')) {
    el = el.parentElement;
    if (el) bg = getComputedStyle(el).backgroundColor;
  }
  const area = svg.viewBox.baseVal.width * svg.viewBox.baseVal.height;
  const free = e => !e.closest('.on-colour') && !e.closest('defs');
  const texts = [...svg.querySelectorAll('text')].filter(free).map(t => getComputedStyle(t).fill);
  const boxes = [...svg.querySelectorAll('path, rect')].filter(free).map(e => {
    const b = e.getBBox(), s = getComputedStyle(e);
    return [b.width * b.height / area, s.fill, parseFloat(s.fillOpacity) * parseFloat(s.opacity)];
  }).filter(([share, fill, opacity]) => share > 0.1 && fill.startsWith('rgb') && opacity > 0.2);
  return {bg, texts, boxes};
}"""


def luma(css: str) -> float:
    r, g, b = _rgb(css)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def check_figure(page, selector: str) -> None:
    """The figure at ``selector``, as shown: readable text (contrast >= 4.5), no white box behind it."""
    expect(page.locator(f"{selector} svg[role=img]").first).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    found = page.evaluate(FIGURE_JS, selector)
    assert found and found["texts"], f"{selector}: no figure text found"
    assert luma(found["bg"]) < 240, f"{selector}: the figure sits on a white background ({found['bg']})"
    for fill in set(found["texts"]):
        ratio = contrast(fill, found["bg"])
        assert ratio >= 4.5, f"{selector}: text {fill} on {found['bg']}: contrast {ratio:.2f} < 4.5"
    white = [box for box in found["boxes"] if luma(box[1]) >= 240]
    assert not white, f"{selector}: white boxes in the figure: {white}"


def test_dark_theme_figures_are_readable(chromium, app_url):
    page = chromium.new_page(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    try:
        page.goto(f"{app_url}?__theme=dark", wait_until="domcontentloaded")
        page.get_by_role("button", name=FIRST_EXAMPLE, exact=True).click(timeout=60_000)
        expect(page.locator("#vc-status")).to_contain_text("brighter", timeout=RESULT_TIMEOUT_MS)
        check_figure(page, "#vc-audio-plot")
        for tab, selector in (("Weights vs measured effect", "#vc-effects-plot"), ("Aligned figure", "#vc-figure")):
            page.get_by_role("tab", name=tab).click()
            check_figure(page, selector)
        page.get_by_role("tab", name="Evaluation").click()
        for selector in ("#ev-robustness", "#ev-confusion-device", "#ev-confusion-word"):
            check_figure(page, selector)
    finally:
        page.close()
