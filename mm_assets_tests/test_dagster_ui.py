"""The Dagster UI after `mm-assets run`, in a real browser (Debian's chromium, driven by Playwright):
the asset graph, an embedding asset's metadata, and its checks recorded per batch."""

import os
import subprocess
import sys
import time

import pytest
import requests
import yaml

from mm_assets.cli import main
from mm_assets_tests.helpers import free_port
from mm_assets_tests.test_service_page import ARTIFACTS, browser  # noqa: F401 (the chromium fixture)


@pytest.fixture
def webserver(settings, tmp_path, dagster_home):
    """`mm-assets run` on the settings' sources, then dagster-webserver on the same instance."""
    config = tmp_path / "mm_assets.yaml"
    encoder = settings.encoders[0]
    config.write_text(
        yaml.safe_dump(
            {
                "home": str(settings.home),
                "sources": [str(s) for s in settings.sources],
                "encoders": [{"name": encoder.name, "model": encoder.model, "batch_size": 4}],
            }
        )
    )
    assert main(["--config", str(config), "run"]) == 0
    port = free_port()
    env = {**os.environ, "MM_ASSETS_CONFIG": str(config), "DAGSTER_HOME": str(dagster_home)}
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-m", "mm_assets.definitions", "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(f"{url}/server_info", timeout=2).ok:
                break
        except requests.ConnectionError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, "dagster-webserver did not start"
        time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


def open_page(browser, url: str):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url)
    skip = page.get_by_role("button", name="Skip")  # the first visit's newsletter dialog
    try:
        skip.click(timeout=5000)
    except Exception:  # not shown
        pass
    return page


def test_the_ui_shows_the_graph_an_embedding_assets_metadata_and_its_checks(webserver, browser):  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = open_page(browser, f"{webserver}/asset-groups")
    graph = page.locator("body")
    for group, asset in (("ingest", "raw_files"), ("serving", "vector_tables")):
        page.get_by_text(group, exact=True).last.wait_for(timeout=60_000)
        for _ in range(3):  # the graph shows groups collapsed: a double click opens one
            if asset in graph.inner_text():
                break
            page.get_by_text(group, exact=True).last.dblclick()
            page.wait_for_timeout(1000)
    shown = graph.inner_text()
    assert all(a in shown for a in ("embedding", "raw_files", "chunks", "vector_tables", "retrieval_eval")), shown
    page.screenshot(path=str(ARTIFACTS / "dagster-asset-graph.png"))

    page.goto(f"{webserver}/assets/embeddings/clip?view=lineage")
    for asset in ("chunks", "raw_files", "vector_tables"):
        page.get_by_text(asset, exact=True).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "dagster-embedding-lineage.png"))

    page.goto(f"{webserver}/assets/embeddings/clip")
    for text in ("Latest materialization", "Row count", "model_id", "embedding_dim", "unit-length vector"):
        page.get_by_text(text).first.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "dagster-embedding-asset.png"), full_page=True)

    page.goto(f"{webserver}/assets/embeddings/clip?view=checks")
    page.get_by_text("vectors_are_valid").first.click(timeout=60_000)
    page.get_by_text("This is a blocking asset check.").first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert "vectors_are_valid" in body and "every_chunk_embedded" in body and "up_to_date" in body
    assert "Not Evaluated" not in body, "after `mm-assets run` every check has a result"
    assert "Partition" in body, "the batch's check results are recorded for its partition"
    page.screenshot(path=str(ARTIFACTS / "dagster-embedding-checks.png"), full_page=True)

    page.goto(f"{webserver}/assets/vector_tables?view=checks")
    page.get_by_text("vectors_unit_norm").first.wait_for(timeout=60_000)
    assert "one_vector_per_chunk" in page.inner_text("body")
