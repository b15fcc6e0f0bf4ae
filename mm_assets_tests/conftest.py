"""Shared fixtures: tiny local CLIP and CLAP models, corpora of real files, settings in a temp folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dagster as dg
import pytest
from transformers import AutoTokenizer

from mm_assets.chunking.text import TextChunker
from mm_assets.config import EncoderConfig, Settings
from mm_assets_tests.corpus import write_bad_files, write_good_images, write_texts
from mm_assets_tests.helpers import clip_and_clap_settings, ingest_with_dagster, params_for
from mm_assets_tests.media_corpus import write_media_corpus
from mm_assets_tests.tiny_models import build_tiny_clap, build_tiny_clip

# Never reach for the hub: a closed local port makes any accidental request fail at once.
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ.setdefault("DAGSTER_TELEMETRY_DISABLED", "1")


def pytest_configure(config):
    """The tests run in an empty folder: settings or data that `mm-assets demo` leaves in the checkout
    (./mm_assets.yaml, ./.mm_assets) must not leak into them (load_settings reads ./mm_assets.yaml).
    Here, once pytest has decided what to collect, before any test module is imported.
    ONNX exports go to a cache of the test session's own, not the user's ~/.cache: made by the main
    process, so that parallel workers (pytest-xdist, which inherit it) export each model once (an
    export is renamed into place whole: workers racing for it both finish)."""
    worker = hasattr(config, "workerinput")
    if not worker:
        os.environ["MM_ASSETS_CACHE"] = tempfile.mkdtemp(prefix="mm_assets_cache_")
    if worker or not getattr(config.option, "numprocesses", None):
        # Not in xdist's controller, which runs no test: its workers must start in the checkout to
        # find the tests, and move to a folder of their own here.
        os.chdir(tempfile.mkdtemp(prefix="mm_assets_tests_"))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip", seed=0)


@pytest.fixture(scope="session")
def tiny_clip_other(tmp_path_factory) -> Path:
    """A second model (different weights and dimension), for lineage and side-by-side tests."""
    return build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip-b", seed=1, projection_dim=24)


@pytest.fixture(scope="session")
def tiny_clap(tmp_path_factory) -> Path:
    """An audio–text model (CLAP architecture) for audio chunks."""
    return build_tiny_clap(tmp_path_factory.mktemp("models") / "tiny-clap", seed=0)


@pytest.fixture
def source(tmp_path) -> Path:
    folder = tmp_path / "src"
    write_good_images(folder / "images")
    write_texts(folder / "texts")
    return folder


@pytest.fixture
def bad_reasons(source, tmp_path) -> dict[str, str]:
    return write_bad_files(source / "bad", tmp_path / "outside")


@pytest.fixture
def settings(tmp_path, tiny_clip, source) -> Settings:
    return Settings(
        home=tmp_path / "home",
        sources=(source,),
        encoders=(EncoderConfig(name="clip", model=str(tiny_clip), batch_size=4),),
        decode_workers=2,
    )


@pytest.fixture(autouse=True)
def dagster_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def indexed(settings) -> Settings:
    """The settings' sources ingested end to end (vector database built)."""
    with dg.instance_for_test() as instance:
        _, result = ingest_with_dagster(settings, instance)
        assert result.success
    return settings


@pytest.fixture(scope="session")
def tokenizer(tiny_clip):
    return AutoTokenizer.from_pretrained(tiny_clip)


@pytest.fixture
def params(tiny_clip, tmp_path) -> dict:
    """Chunking parameters of the default settings, per file kind."""
    return params_for(tiny_clip, tmp_path)


@pytest.fixture
def chunker(tokenizer, params) -> TextChunker:
    return TextChunker(tokenizer, params["text"])


@pytest.fixture(scope="session")
def served(tmp_path_factory, tiny_clip, tiny_clap) -> Settings:
    """Images, texts, a PDF, markdown and HTML with images, a video with subtitles and audio, indexed
    with a CLIP and a CLAP encoder."""
    root = tmp_path_factory.mktemp("served")
    write_good_images(root / "src" / "images")
    write_texts(root / "src" / "texts")
    write_media_corpus(root / "src" / "media")
    settings = clip_and_clap_settings(root, tiny_clip, tiny_clap)
    with dg.instance_for_test() as instance:
        assert ingest_with_dagster(settings, instance)[1].success
    return settings
