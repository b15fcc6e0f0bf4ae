"""The search page in a real browser: Debian's chromium driven by Playwright (its own browser download is
never used). Screenshots go to test-artifacts/ (or $MM_ASSETS_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from mm_assets_tests.helpers import running

ARTIFACTS = Path(os.environ.get("MM_ASSETS_TEST_ARTIFACTS", Path(__file__).parents[1] / "test-artifacts"))
# As .ci/run starts it: root in a container, no GPU, no network beyond loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ALL_THUMBNAILS_LOADED = """() => {
    const images = [...document.querySelectorAll('.hit img.thumb')];
    return images.length > 0 && images.every((i) => i.complete && i.naturalWidth > 0);
}"""


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(chromium).exists(), "the browser tests need Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_search_by_text_and_by_an_uploaded_image_shows_thumbnails(served, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    photo = served.sources[0] / "images" / "photo.jpg"
    with running(served) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_function("document.getElementById('encoder').options.length === 2")
        assert "files" in page.inner_text("#status")

        page.select_option("#modality", "image")
        page.fill("#query", "a colourful gradient")
        page.click("#search-form button[type=submit]")
        page.wait_for_function(ALL_THUMBNAILS_LOADED)
        cards = page.locator(".hit")
        assert cards.count() == 12
        assert {cards.nth(i).get_attribute("data-modality") for i in range(cards.count())} == {"image"}
        page.screenshot(path=str(ARTIFACTS / "search-text.png"), full_page=True)

        page.set_input_files("#upload", str(photo))
        page.wait_for_function(f"document.querySelector('.hit')?.dataset.path === {str(photo)!r}")
        page.wait_for_function(ALL_THUMBNAILS_LOADED)
        assert "photo.jpg" in page.inner_text(".hit .path")
        page.screenshot(path=str(ARTIFACTS / "search-image.png"), full_page=True)

        page.click(".hit .show-lineage")
        page.wait_for_selector("#lineage:not([hidden]) dd")
        lineage = page.inner_text("#lineage")
        assert str(photo) in lineage and "sha256:" in lineage and served.default_encoder.model in lineage
        page.click("#lineage-close")

        first = page.get_attribute(".hit", "data-chunk-id")
        page.click(".hit .more-like-this")
        page.wait_for_function(
            f"document.querySelector('.hit') && document.querySelector('.hit').dataset.chunkId !== {first!r}"
        )
        assert "like the chosen chunk" in page.inner_text("#status")

        page.select_option("#modality", "")
        page.select_option("#compare", index=2)  # clap beside clip, on the same query
        page.fill("#query", "a low tone")
        page.click("#search-form button[type=submit]")
        # The audio encoder's column plays its windows (waited for: earlier option changes re-ran the
        # previous query, and their answers may land first).
        page.wait_for_function(
            "document.querySelectorAll('.column').length === 2"
            " && document.querySelectorAll('.column')[1].querySelector('.hit audio') !== null"
        )
        page.screenshot(path=str(ARTIFACTS / "compare-encoders.png"), full_page=True)

        # Words too: BM25 fused with the vectors, each hit showing its fused score.
        page.select_option("#compare", "")
        page.select_option("#modality", "text")
        page.fill("#query", "rainfall")
        page.check("#hybrid")
        page.click("#search-form button[type=submit]")
        # Each option change re-runs the previous query first: wait for this one's answer.
        page.wait_for_function("document.querySelector('.hit')?.innerText.toLowerCase().includes('rainfall')")
        first_three = [page.locator(".hit").nth(i).inner_text().lower() for i in range(3)]
        assert all("rainfall" in text and "score" in text for text in first_three), "the chunks with the word first"
        page.screenshot(path=str(ARTIFACTS / "search-hybrid.png"), full_page=True)

        # No duplicates: the option travels with the query (the service collapses duplicate groups).
        with page.expect_response(lambda r: "dedup=true" in r.url and r.ok):
            page.check("#dedup")
        assert not errors
