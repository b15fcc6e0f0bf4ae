"""The whole asset graph, materialized with Dagster against real files, good and bad."""

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mm_assets.definitions import build_definitions
from mm_assets.encoders.identity import fingerprint
from mm_assets.search.query import search
from mm_assets_tests import media_corpus
from mm_assets_tests.corpus import gradient
from mm_assets_tests.helpers import db_rows, ingest_with_dagster, stored_vectors


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def test_definitions_load_with_groups_kinds_and_code_versions(settings):
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {
        "raw_files": "ingest",
        "chunks": "ingest",
        "embeddings/clip": "embedding",
        "vector_tables": "serving",
        "retrieval_eval": "serving",
        "duplicates": "serving",
    }
    for key in graph.get_all_asset_keys():
        assert graph.get(key).owners == ["team:mm_assets"] and graph.get(key).tags["stage"]
    emb = graph.get(dg.AssetKey(["embeddings", "clip"]))
    assert {"pytorch"} <= set(emb.kinds) and emb.code_version == fingerprint(settings.default_encoder)
    assert "duckdb" in graph.get(dg.AssetKey("vector_tables")).kinds
    defs.resolve_job_def("ingest_job")


def test_materialize_everything_with_bad_files_in_the_batch(settings, instance, bad_reasons):
    batch, result = ingest_with_dagster(settings, instance)
    assert result.success

    # the batch completed and every good file is served
    files = dict(db_rows(settings, "SELECT path, kind FROM files"))
    good = [p for p in (settings.sources[0] / "images").iterdir()] + [
        p for p in (settings.sources[0] / "texts").iterdir()
    ]
    assert {str(p) for p in good} == set(files)

    # each bad file is in the quarantine table with its specific reason, and in the run's metadata
    quarantine = {
        path.rsplit("/", 1)[1]: reason for path, reason in db_rows(settings, "SELECT path, reason FROM quarantine")
    }
    assert set(quarantine) == set(bad_reasons)
    for name, fragment in bad_reasons.items():
        assert fragment in quarantine[name]
    raw_meta = result.asset_materializations_for_node("raw_files")[0].metadata
    assert raw_meta["files_quarantined"].value == len(bad_reasons)
    assert "decompression bomb" in raw_meta["quarantine"].value

    # every chunk has exactly one unit vector; every file has chunks
    (table,) = [r[0] for r in db_rows(settings, "SELECT table_name FROM encoders")]
    chunk_ids = {r[0] for r in db_rows(settings, "SELECT chunk_id FROM chunks")}
    ids, vectors = stored_vectors(settings, table)
    assert sorted(chunk_ids) == ids
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert db_rows(settings, "SELECT count(*) FROM files WHERE file_id NOT IN (SELECT file_id FROM chunks)")[0][0] == 0

    # asset checks ran and passed; the batch's are recorded for its partition (the UI shows them per batch)
    checks = {
        (e.asset_key.to_user_string(), e.check_name): (e.passed, e.partition)
        for e in result.get_asset_check_evaluations()
    }
    assert checks == {
        ("chunks", "every_file_has_chunks"): (True, batch),
        ("embeddings/clip", "vectors_are_valid"): (True, batch),
        ("embeddings/clip", "every_chunk_embedded"): (True, batch),
        ("vector_tables", "vectors_unit_norm"): (True, None),
        ("vector_tables", "one_vector_per_chunk"): (True, None),
        ("vector_tables", "every_live_chunk_has_a_vector"): (True, None),
    }


def test_embedding_metadata_records_the_encoder_and_timings(settings, instance):
    _, result = ingest_with_dagster(settings, instance)
    meta = {k: v.value for k, v in result.asset_materializations_for_node("embeddings__clip")[0].metadata.items()}
    for key in (
        "model_id",
        "revision",
        "embedding_dim",
        "dtype",
        "device",
        "parameters",
        "versions",
        "image_size",
        "image_mean",
        "max_tokens",
        "fingerprint",
        "table_name",
        "dagster/row_count",
        "dagster/column_schema",
        "image_per_second",
        "image_seconds_decode",
        "image_seconds_forward",
        "text_per_second",
    ):
        assert key in meta, key
    assert meta["embedding_dim"] == 16 and meta["revision"].startswith("sha256:")
    chunk_meta = result.asset_materializations_for_node("chunks")[0].metadata
    assert chunk_meta["dagster/row_count"].value > 0
    assert chunk_meta["max_text_tokens"].value <= 77


def write_references_that_leave_the_sources(tmp_path) -> tuple[Path, Path]:
    """Sources whose documents, video and image point at files outside them (or at things that are
    not files); returns (source folder, folder outside it). Nothing outside may reach the index."""
    outside, source = tmp_path / "outside", tmp_path / "home_dir" / "src"
    (source / "docs" / "pictures").mkdir(parents=True)
    (source / "video").mkdir()
    outside.mkdir()
    (outside / "secret.png").write_bytes(media_corpus._png((200, 10, 10)))
    (outside / "secret.vtt").write_text("WEBVTT\n\n00:00:00.500 --> 00:00:02.000\nSECRET SUBTITLE\n")
    (outside / "secret.txt").write_text("SECRET CAPTION")
    # A captions manifest above the source folder: never read, whatever it names.
    (source.parent / "captions.csv").write_text("path,caption\nsrc/docs/cat.png,SECRET MANIFEST\n")
    docs = source / "docs"
    (docs / "ok.png").write_bytes(media_corpus._png((10, 200, 10)))
    (docs / "linked.png").symlink_to(outside / "secret.png")
    (docs / "linked_folder").symlink_to(outside, target_is_directory=True)
    (docs / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(docs / "pipe.png")
    (docs / "notes.md").write_text(
        "# Notes\n\nA harbour at dawn.\n\n"
        f"![up](../../../outside/secret.png) ![absolute]({outside / 'secret.png'}) "
        f"![url](file://{outside / 'secret.png'}) ![symlink](linked.png) ![folder](linked_folder/secret.png) "
        "![device](zero.png) ![fifo](pipe.png) ![fine](ok.png)\n"
    )
    (docs / "page.html").write_text(
        f'<h1>Page</h1><p>A lighthouse.</p><img src="file://{outside / "secret.png"}" alt="x">'
    )
    gradient(40, 30, 9).save(docs / "cat.png")
    (docs / "cat.txt").symlink_to(outside / "secret.txt")  # a caption sidecar leading outside
    (source / "video" / "film.mp4").write_bytes(media_corpus.video_bytes())
    (source / "video" / "film.vtt").symlink_to(outside / "secret.vtt")
    return source, outside


def test_references_outside_the_sources_are_reported_and_never_read(settings, instance, tmp_path):
    source, outside = write_references_that_leave_the_sources(tmp_path)
    settings = replace(settings, sources=(source,))
    signal.alarm(300)  # opening the FIFO would block forever
    try:
        batch, result = ingest_with_dagster(settings, instance)
    finally:
        signal.alarm(0)
    assert result.success
    texts = [t for (t,) in db_rows(settings, "SELECT coalesce(text, '') FROM chunks")]
    assert not [t for t in texts if "SECRET" in t], "content from outside the sources was indexed"
    assert db_rows(settings, "SELECT caption FROM files WHERE path LIKE '%cat.png'") == [(None,)]
    figures = db_rows(settings, "SELECT text FROM chunks WHERE role = 'figure'")
    assert figures == [("ok.png",)], "only the linked image inside the sources is read"
    [chunks] = result.asset_materializations_for_node("chunks")
    problems = chunks.metadata["problems"].value
    for src in ("../../../outside/secret.png", str(outside / "secret.png"), "linked.png", "linked_folder/secret.png"):
        assert f"image {src!r}:" in problems, src
    assert problems.count("resolves outside the source folders") >= 4
    assert "zero.png resolves outside the source folders" in problems
    assert "pipe.png is not a regular file" in problems
    assert "only local images are read" in problems  # file:// (HTML; markdown-it drops such links itself)
    assert "subtitles:" in problems and "film.vtt resolves outside the source folders" in problems
    hits = search(settings.db_path, text="SECRET SUBTITLE", k=50)
    assert hits and not [h for h in hits if "SECRET" in (h.text or "")]


def test_a_quarantined_file_that_is_fixed_leaves_the_quarantine_and_is_found(settings, instance, bad_reasons):
    truncated = settings.sources[0] / "bad" / "truncated.jpg"
    assert ingest_with_dagster(settings, instance)[1].success
    assert str(truncated) in {p for (p,) in db_rows(settings, "SELECT path FROM quarantine")}
    gradient(120, 90, 11).save(truncated, "JPEG")
    assert ingest_with_dagster(settings, instance)[1].success
    assert str(truncated) not in {p for (p,) in db_rows(settings, "SELECT path FROM quarantine")}
    assert search(settings.db_path, image=truncated, k=1)[0].path == str(truncated)


def test_every_file_ends_searchable_or_quarantined_with_a_reason(settings, instance):
    """A page that is all script, and legacy HTML nested past Python's recursion limit."""
    docs = settings.sources[0] / "texts"
    (docs / "empty.html").write_text("<html><script>var x = 1;</script></html>")
    (docs / "legacy.html").write_text("<html><body>" + "<div><p>harbour " * 5000 + "</body></html>")
    batch, result = ingest_with_dagster(settings, instance)
    assert result.success
    quarantine = dict(db_rows(settings, "SELECT path, reason FROM quarantine"))
    assert "yields no chunks" in quarantine[str(docs / "empty.html")]
    assert str(docs / "legacy.html") not in quarantine
    legacy = db_rows(settings, "SELECT count(*) FROM chunks JOIN files USING (file_id) WHERE path LIKE '%legacy.html'")
    assert legacy[0][0] > 0
    chunked = {p for (p,) in db_rows(settings, "SELECT DISTINCT path FROM chunks JOIN files USING (file_id)")}
    ok = {p for (p,) in db_rows(settings, "SELECT path FROM file_versions WHERE status = 'ok'")}
    assert ok == chunked | {p for p in quarantine if p in ok}, "every ingested file is searchable or quarantined"


def test_a_file_that_takes_too_long_to_chunk_is_stopped_and_quarantined(settings, instance):
    slow = settings.sources[0] / "texts" / "one_line.txt"
    slow.write_text(" ".join(f"boat{i % 97}" for i in range(400_000)))  # seconds of tokenizing
    settings = replace(settings, max_seconds_per_file=1.0)
    start = time.monotonic()
    batch, result = ingest_with_dagster(settings, instance)
    assert result.success and time.monotonic() - start < 120
    quarantine = dict(db_rows(settings, "SELECT path, reason FROM quarantine"))
    assert "took longer than 1 s (max_seconds_per_file)" in quarantine[str(slow)]
    assert db_rows(settings, "SELECT count(*) FROM files WHERE path LIKE '%guide.md'") == [(1,)]


def test_materializations_use_dagster_metadata_conventions(settings, instance):
    _, result = ingest_with_dagster(settings, instance)
    for node in ("raw_files", "chunks", "embeddings__clip", "vector_tables"):
        meta = result.asset_materializations_for_node(node)[0].metadata
        assert meta["dagster/uri"].value and meta["dagster/row_count"].value > 0
        columns = {c.name: c.description for c in meta["dagster/column_schema"].value.columns}
        assert columns["chunk_id" if node != "raw_files" else "file_id"], f"{node}: columns say what they mean"
    served = result.asset_materializations_for_node("vector_tables")[0].metadata
    assert served["dagster/table_name"].value == "chunks"
    assert {"columns/files", "columns/paths", "columns/quarantine"} <= set(served)
    assert any(k.startswith("columns/emb_clip_") for k in served)


def test_a_partition_added_by_hand_fails_clearly_and_is_removed(settings, instance):
    """What "Add partition" in the launch dialog does: a key discovery never made."""
    instance.add_dynamic_partitions("ingest_batches", ["my-batch"])
    defs = build_definitions(settings)
    result = defs.resolve_job_def("ingest_job").execute_in_process(
        partition_key="my-batch", instance=instance, raise_on_error=False
    )
    assert not result.success
    (failure, *_) = result.get_step_failure_events()
    assert (
        "'my-batch' is not an ingest batch, so it was removed again"
        in failure.step_failure_data.user_failure_data.description
    )
    assert "my-batch" not in instance.get_dynamic_partitions("ingest_batches")
