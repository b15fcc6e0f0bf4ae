"""mm_assets/store: shards written atomically, the vector database derived from them, old shards still read."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from mm_assets.definitions import build_definitions
from mm_assets.store.shards import ShardStore
from mm_assets_tests.helpers import db_rows, stored_vectors


def test_store_lists_only_complete_files(tmp_path):
    store = ShardStore(f"memory://{tmp_path.name}/lists")
    table = pa.table({"chunk_id": ["a", "b"], "x": np.arange(2)})
    store.write_table(store.shard("chunks", "b1"), table)
    with pytest.raises(RuntimeError), store.writer(store.shard("chunks", "b2"), table.schema) as write:
        write(table)
        raise RuntimeError("killed mid-write")
    assert store.list(store.shard_dir("chunks")) == ["shards/chunks/b1.parquet"]
    assert set(store.all_shards()) == {"shards/chunks/b1.parquet"}


def test_a_half_written_shard_is_never_read_and_stale_ones_are_cleaned_up(indexed):

    store = indexed.layout.store
    chunk_dir = Path(store.path(store.shard_dir("chunks")))
    stale, live = chunk_dir / ".b-killed.parquet.1234abcd.tmp", chunk_dir / ".b-writing.parquet.5678abcd.tmp"
    for tmp in (stale, live):
        tmp.write_bytes(b"PAR1 half a shard")
    day_ago = time.time() - 86400
    os.utime(stale, (day_ago, day_ago))
    assert all(".tmp" not in key for key in store.list(store.shard_dir("chunks")))
    defs = build_definitions(indexed)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            list(defs.assets), selection=["vector_tables"], instance=instance, resources=dict(defs.resources)
        )
    assert result.success
    assert not stale.exists(), "a temporary untouched for hours is a killed writer's: removed"
    assert live.exists(), "a recent temporary may belong to a writer still running: kept"
    [materialization] = result.asset_materializations_for_node("vector_tables")
    assert materialization.metadata["stale_temporaries_removed"].value == 1


def test_a_build_serves_one_segment_whose_matrix_holds_the_stored_vectors(indexed):
    from mm_assets.assets.vector_tables import serving_spec
    from mm_assets.encoders.identity import stored_records
    from mm_assets.store.matrices import matrix_path
    from mm_assets.store.segments import read_generation
    from mm_assets.store.vector_db import update_vector_db

    layout = indexed.layout
    (segment,) = read_generation(indexed.db_path).segments
    table = db_rows(indexed, "SELECT table_name FROM encoders")[0][0]
    ids, vectors = stored_vectors(indexed, table)  # in chunk-id order
    path = matrix_path(indexed.db_path, segment.name, table)
    order = np.load(path.with_suffix(".order.npy"))
    assert list(np.load(path.with_suffix(".ids.npy"))[order]) == ids
    assert np.array_equal(np.load(path)[order], vectors)
    report = update_vector_db(layout, stored_records(layout.store), serving_spec(indexed), log=lambda _: None)
    assert report.mode == "up to date" and report.generation == 1, "no new shard: nothing is rewritten"


def _rebuild(settings) -> None:
    from mm_assets.assets.vector_tables import serving_spec
    from mm_assets.encoders.identity import stored_records
    from mm_assets.store.vector_db import update_vector_db

    update_vector_db(settings.layout, stored_records(settings.layout.store), serving_spec(settings), log=lambda _: None)


def test_shards_written_before_the_column_renames_keep_reading(indexed):
    from mm_assets.search.query import search

    store = indexed.layout.store
    files_sql, chunks_sql = "SELECT path, kind FROM files ORDER BY path", "SELECT chunk_id, role FROM chunks ORDER BY 1"
    before = db_rows(indexed, files_sql), db_rows(indexed, chunks_sql)
    assert {kind for _, kind in before[0]} == {"image", "text"} and {"image", "window"} <= {r for _, r in before[1]}
    for folder, old_names in (("raw_files", {"kind": "modality"}), ("chunks", {"role": "source"})):
        for key in store.list(store.shard_dir(folder)):
            table = store.read_table(key)
            store.write_table(key, table.rename_columns([old_names.get(n, n) for n in table.column_names]))
    _rebuild(indexed)
    assert (db_rows(indexed, files_sql), db_rows(indexed, chunks_sql)) == before
    hits = search(indexed.db_path, image=indexed.sources[0] / "images" / "photo.jpg", k=1)
    assert hits[0].role == "image" and hits[0].path.endswith("photo.jpg")


def test_old_and_new_shards_read_together_give_one_column():
    from mm_assets.store.tables import RAW_FILES, upgrade

    old = pa.table({"path": ["a"], "modality": ["image"]})
    new = pa.table({"path": ["b"], "kind": ["video"]})
    both = upgrade(pa.concat_tables([old, new], promote_options="default"), RAW_FILES)
    assert both.column_names == ["path", "kind"] and both.column("kind").to_pylist() == ["image", "video"]
    assert upgrade(old, RAW_FILES).column_names == ["path", "kind"]


def test_the_database_is_out_of_date_when_the_default_encoder_or_hnsw_changes(indexed, tiny_clip_other):
    from dataclasses import replace

    from mm_assets.assets.vector_tables import serving_spec
    from mm_assets.config import EncoderConfig
    from mm_assets.store.vector_db import is_up_to_date

    layout = indexed.layout
    assert is_up_to_date(layout, serving_spec(indexed))
    assert not is_up_to_date(layout, serving_spec(replace(indexed, hnsw=True)))
    two = replace(indexed, encoders=(*indexed.encoders, EncoderConfig("other", model=str(tiny_clip_other))))
    assert is_up_to_date(layout, serving_spec(replace(two, default_encoder_name="clip"))) is False, "a new encoder"
    assert not is_up_to_date(layout, serving_spec(replace(two, default_encoder_name="other")))


def test_lost_serving_matrices_or_a_killed_update_are_repaired_by_the_next_one(indexed):
    import shutil

    from mm_assets.assets.vector_tables import serving_spec
    from mm_assets.store.vector_db import is_up_to_date

    layout = indexed.layout
    segments = layout.db_path / "segments"
    leftover = segments / ".00000002-deadbe.building"
    leftover.write_bytes(b"half a database")
    Path(f"{leftover}.wal").write_bytes(b"its log")
    (segments / ".00000002-deadbe.matrices").mkdir()
    for matrices in [p for p in segments.iterdir() if p.is_dir() and not p.name.startswith(".")]:
        shutil.rmtree(matrices)
    assert not is_up_to_date(layout, serving_spec(indexed)), "search cannot answer: the next run must rebuild"
    _rebuild(indexed)
    assert is_up_to_date(layout, serving_spec(indexed))
    assert not list(segments.glob(".*")), "what a killed build left is removed"
    photo = indexed.sources[0] / "images" / "photo.jpg"
    from mm_assets.search.query import search

    assert search(indexed.db_path, image=photo, k=1)[0].path == str(photo)
