"""The whole asset graph, materialized with Dagster against real files, good and bad."""

import dagster as dg
import numpy as np
import pytest

from mm_assets.definitions import build_definitions
from mm_assets.encoders.identity import fingerprint
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
        "chunks": "chunking",
        "embeddings/clip": "embedding",
        "vector_tables": "vector_tables",
        "retrieval_eval": "evaluation",
    }
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

    # asset checks ran and passed
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        ("chunks", "every_file_has_chunks"): True,
        ("embeddings/clip", "vectors_are_valid"): True,
        ("embeddings/clip", "every_chunk_embedded"): True,
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
