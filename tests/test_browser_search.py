"""A real browser on the Search tab: Chromium's fake microphone says "fan" (synthetic,
assets/retrieval/queries/mic_fan.wav), the tab records it, Search is pressed, and the gallery shows
results whose status says what was heard and each input's share. Screenshot:
``test-artifacts/search.png``. Skips like tests/test_browser.py (never under CI=true).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect
from test_browser import (
    ARTIFACTS,
    RESULT_TIMEOUT_MS,
    chromium_with_microphone,
    microphone_page,
    playwright,  # noqa: F401  (the fixture)
    record,
)

ROOT = Path(__file__).resolve().parent.parent
SEARCH_MIC = ROOT / "assets" / "retrieval" / "queries" / "mic_fan.wav"  # a synthetic "fan", padded to 3 s


@pytest.fixture(scope="module")
def search_browser(playwright):  # noqa: F811 - the fixture imported above
    with chromium_with_microphone(playwright, SEARCH_MIC) as browser:
        yield browser


def test_search_with_the_microphone_and_a_typed_text(search_browser, app_url):
    shots = [ARTIFACTS / "search.png"]
    with microphone_page(search_browser, app_url, shots, height=1100, failure="search_failure.png") as page:
        page.get_by_role("tab", name="Search").click(timeout=60_000)
        audio = page.locator("#search-audio")
        expect(audio.locator("button.record-button")).to_be_visible(timeout=60_000)
        record(page, audio, 2500)
        page.locator("#search-run").click()
        status = page.locator("#search-status")
        expect(status).to_contain_text("results", timeout=RESULT_TIMEOUT_MS)
        expect(page.locator("#search-gallery img").first).to_be_visible(timeout=30_000)
        text = status.inner_text()
        assert "heard" in text and "sim(spoken)" in text, text
        # the spoken word counts, alone: every shown share is the spoken one
        page.locator("#search-text input, #search-text textarea").first.fill("a desk fan")
        page.locator("#search-run").click()
        expect(status).to_contain_text("sim(text)", timeout=RESULT_TIMEOUT_MS)
        page.screenshot(path=str(shots[0]), full_page=True)
        text = status.inner_text()
        assert "sim(spoken)" in text and "sim(text)" in text, text
