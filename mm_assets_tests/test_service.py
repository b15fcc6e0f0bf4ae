"""mm_assets/service: the HTTP API against a running server (every endpoint, bad uploads, a traversal
attempt on the media endpoint, a rebuild while serving), and `mm-assets serve` itself."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import requests
import yaml
from PIL import Image

from mm_assets.config_loading import load_settings
from mm_assets.search.query import search
from mm_assets.service.app import MAX_UPLOAD_BYTES
from mm_assets_tests.corpus import gradient, write_good_images, write_texts
from mm_assets_tests.helpers import free_port, ingest_with_dagster, running
from mm_assets_tests.media_corpus import audio_bytes


@pytest.fixture(scope="module")
def base_url(served) -> Iterator[str]:
    with running(served) as url:
        yield url


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_text_search_answers_as_the_cli_does(served, base_url):
    response = requests.get(f"{base_url}/api/search", params={"q": "sailing boats", "k": 5}, timeout=60)
    assert response.status_code == 200
    hits = response.json()
    cli = [h.as_dict() for h in search(served.db_path, text="sailing boats", k=5)]
    assert [h["chunk_id"] for h in hits] == [h["chunk_id"] for h in cli]
    assert np.allclose([h["distance"] for h in hits], [h["distance"] for h in cli], atol=1e-6)
    assert set(hits[0]) == set(cli[0]), "the same JSON shape as `mm-assets search --json`"


def test_options_filter_group_and_pick_the_encoder(base_url):
    get = lambda **params: requests.get(f"{base_url}/api/search", params={"q": "a picture", **params}, timeout=60)  # noqa: E731
    images = get(modality="image", k=4).json()
    assert len(images) == 4 and {h["modality"] for h in images} == {"image"}
    grouped = get(k=50, group_by_file="true").json()
    assert len({h["path"] for h in grouped}) == len(grouped)
    with_context = get(k=1, context=1, modality="text").json()
    assert with_context[0]["context"], "neighbouring chunks attached"
    audio = get(encoder="clap", k=3).json()
    assert {h["modality"] for h in audio} == {"audio"} and {h["encoder"].split("_")[0] for h in audio} == {"clap"}
    unknown = get(encoder="siglip")
    assert unknown.status_code == 400 and "no embedding table for encoder 'siglip'" in unknown.json()["detail"]
    assert get(k=0).status_code == 422 and get(modality="smell").status_code == 422


def test_an_uploaded_image_finds_itself_and_an_audio_clip_finds_audio(served, base_url):
    photo = served.sources[0] / "images" / "photo.jpg"
    with open(photo, "rb") as fh:
        hits = requests.post(
            f"{base_url}/api/search/image", files={"file": ("photo.jpg", fh, "image/jpeg")}, params={"k": 3}, timeout=60
        ).json()
    assert hits[0]["path"] == str(photo) and hits[0]["distance"] < 1e-4
    clip = audio_bytes(4.0)
    audio = requests.post(
        f"{base_url}/api/search/audio",
        files={"file": ("clip.wav", clip, "audio/wav")},
        params={"encoder": "clap", "k": 2},
        timeout=60,
    )
    assert audio.status_code == 200 and {h["modality"] for h in audio.json()} == {"audio"}


def test_bad_uploads_get_a_clear_4xx(base_url):
    def post(kind: str, data: bytes, **params):
        return requests.post(
            f"{base_url}/api/search/{kind}", files={"file": ("x", data, "application/octet-stream")}, params=params
        )

    not_image = post("image", b"this is text, not a picture")
    assert not_image.status_code == 400 and "not a recognised image format" in not_image.json()["detail"]
    truncated = png_bytes(gradient(200, 150, 3))[:300]
    assert post("image", truncated).status_code == 400
    bomb = post("image", png_bytes(Image.new("1", (12_000, 12_000))))
    assert bomb.status_code == 400 and "decompression bomb" in bomb.json()["detail"]
    assert post("image", b"").status_code == 400
    too_big = post("image", b"\0" * (MAX_UPLOAD_BYTES + 1))
    assert too_big.status_code == 413
    assert post("audio", b"RIFF....WAVEfmt garbage").status_code == 400
    wrong_tower = post("audio", audio_bytes(2.0), encoder="clip")
    assert wrong_tower.status_code == 400 and "cannot take an audio query" in wrong_tower.json()["detail"]
    assert requests.post(f"{base_url}/api/search/image").status_code == 422, "no file at all"


def test_more_like_this_and_lineage(served, base_url):
    (photo_hit,) = requests.get(
        f"{base_url}/api/search", params={"q": "x", "modality": "image", "k": 1}, timeout=60
    ).json()
    similar = requests.get(f"{base_url}/api/similar/{photo_hit['chunk_id']}", params={"k": 5}, timeout=60).json()
    assert len(similar) == 5 and photo_hit["chunk_id"] not in {h["chunk_id"] for h in similar}
    assert [h["distance"] for h in similar] == sorted(h["distance"] for h in similar)
    assert requests.get(f"{base_url}/api/similar/{'0' * 32}").status_code == 404
    lineage = requests.get(f"{base_url}/api/lineage/{photo_hit['chunk_id']}", timeout=60).json()
    assert lineage["path"] == photo_hit["path"] and lineage["batch"].startswith("b")
    assert lineage["model_id"] == served.default_encoder.model and lineage["revision"].startswith("sha256:")
    assert lineage["runtime"].split()[0] in ("torch", "onnxruntime")  # what ran the model, with its version
    assert lineage["encoder_key"] == photo_hit["encoder"]


def first_hit(base_url: str, **params) -> dict:
    hits = requests.get(f"{base_url}/api/search", params={"q": "figure", "k": 200, **params}, timeout=60).json()
    return hits[0]


def test_media_of_each_kind_of_hit(served, base_url):
    def media(hit: dict) -> requests.Response:
        return requests.get(f"{base_url}/api/media/{hit['chunk_id']}", timeout=60)

    def picture(response: requests.Response) -> Image.Image:
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        return Image.open(io.BytesIO(response.content))

    hits = requests.get(f"{base_url}/api/search", params={"q": "lighthouse", "k": 200}, timeout=60).json()
    by_kind = {}
    for hit in hits:
        kind = (hit["role"], hit["page"] is not None, hit["t_start"] is not None)
        by_kind.setdefault(kind, hit)
    image_file = next(h for h in hits if h["role"] == "image" and h["path"].endswith("photo.jpg"))
    assert max(picture(media(image_file)).size) <= 384
    pdf_text = next(h for h in hits if h["page"] and h["modality"] == "text" and h["bbox"])
    page = picture(media(pdf_text))
    assert max(page.size) == 800, "the whole page, its box outlined"
    frame = next(h for h in hits if h["role"] == "frame")
    assert picture(media(frame)).size[0] > 0
    linked = next(h for h in hits if h["role"] == "figure" and h["page"] is None)
    assert picture(media(linked)).size[0] > 0
    text_only = next(h for h in hits if h["role"] == "window" and h["page"] is None)
    assert media(text_only).status_code == 404
    audio = requests.get(f"{base_url}/api/search", params={"q": "tone", "encoder": "clap", "k": 1}, timeout=60).json()
    wav = media(audio[0])
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav" and wav.content[:4] == b"RIFF"


@pytest.mark.parametrize(
    "attempt",
    ["..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "../../../../etc/passwd", "file:%2F%2F%2Fetc%2Fpasswd"],
)
def test_the_media_endpoint_serves_only_chunks_of_the_index(base_url, attempt):
    response = requests.get(f"{base_url}/api/media/{attempt}", timeout=60)
    assert response.status_code == 404 and b"root:" not in response.content


def test_build_health_readiness_and_the_openapi_schema(served, base_url):
    assert requests.get(f"{base_url}/api/health").json() == {"status": "ok"}
    ready = requests.get(f"{base_url}/api/ready").json()
    assert ready["status"] == "ready"
    build = requests.get(f"{base_url}/api/build").json()
    assert {e["encoder"] for e in build["encoders"]} == {"clip", "clap"}
    assert all(e["fingerprint"] and e["vectors"] > 0 for e in build["encoders"])
    assert build["counts"]["chunks"] > 0 and build["default_encoder"].startswith("clip_")
    schema = requests.get(f"{base_url}/openapi.json").json()
    assert {"/api/search", "/api/search/image", "/api/search/audio", "/api/similar/{chunk_id}"} <= set(schema["paths"])
    page = requests.get(f"{base_url}/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    assert requests.get(f"{base_url}/static/app.js").status_code == 200


def test_a_token_is_required_when_set(served):
    with running(served, token="s3cret") as url:
        assert requests.get(f"{url}/api/search", params={"q": "x"}).status_code == 401
        assert requests.get(f"{url}/api/search", params={"q": "x", "token": "wrong"}).status_code == 401
        headers = {"Authorization": "Bearer s3cret"}
        assert requests.get(f"{url}/api/search", params={"q": "x"}, headers=headers).status_code == 200
        assert requests.get(f"{url}/api/build", params={"token": "s3cret"}).status_code == 200
        assert requests.get(f"{url}/").status_code == 200, "the page holds no data"


@contextmanager
def serving_process(config: Path) -> Iterator[str]:
    """`mm-assets serve` in its own process, as deployed (DuckDB shares one database instance per path
    within a process, so a server must not share its process with the builder)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mm_assets.cli", "--config", str(config), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                requests.get(f"{url}/api/health", timeout=5)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(30)


def test_answers_switch_to_a_new_build_while_serving(tmp_path, tiny_clip):
    """Searches in a loop while new files are ingested and the vector tables rebuilt: no error, and
    the new files are found without a restart."""
    write_good_images(tmp_path / "src" / "images")
    config = tmp_path / "mm_assets.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "home": str(tmp_path / "home"),
                "sources": [str(tmp_path / "src")],
                "encoders": [{"name": "clip", "model": str(tiny_clip), "batch_size": 8}],
                "decode_workers": 2,
            }
        )
    )
    settings = load_settings(config)
    with dg.instance_for_test() as instance, serving_process(config) as url:
        assert requests.get(f"{url}/api/ready").status_code == 503, "no database yet"
        assert ingest_with_dagster(settings, instance)[1].success
        errors, stop = [], threading.Event()

        def keep_searching():
            while not stop.is_set():
                response = requests.get(f"{url}/api/search", params={"q": "notes", "k": 3}, timeout=60)
                if response.status_code != 200:
                    errors.append(response.text)

        searcher = threading.Thread(target=keep_searching)
        searcher.start()
        write_texts(tmp_path / "src" / "texts")
        assert ingest_with_dagster(settings, instance)[1].success
        stop.set()
        searcher.join()
        hits = requests.get(f"{url}/api/search", params={"q": "notes", "modality": "text", "k": 3}).json()
    assert not errors
    assert hits and all(Path(h["path"]).parent == tmp_path / "src" / "texts" for h in hits)


def test_serve_refuses_to_bind_beyond_loopback_without_a_token(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mm_assets.cli", "--home", str(tmp_path), "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "set --token or MM_ASSETS_TOKEN" in result.stderr
