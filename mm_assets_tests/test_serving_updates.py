"""Serving is updated in place: each batch is one new segment and a dead list, a rebuild from shards
gives the same answers, compaction folds segments into one, HNSW filters still find rare modalities,
and a writer killed at any point leaves the previous generation answering."""

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from mm_assets.assets.vector_tables import serving_spec
from mm_assets.definitions import INGEST_JOB, build_definitions
from mm_assets.encoders.identity import encoder_key, stored_records
from mm_assets.ingest.batches import create_batch
from mm_assets.search.query import search
from mm_assets.store import segment_writer, vector_db
from mm_assets.store.layout import Layout
from mm_assets.store.segments import open_read_only, read_generation
from mm_assets.store.tables import EMBEDDINGS
from mm_assets.store.vector_db import compact, single_writer, update_vector_db
from mm_assets_tests.corpus import gradient
from mm_assets_tests.helpers import run_requested, sensor_tick


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def snapshot(db_path: Path) -> dict:
    """Every live row a query can reach, in a stable order (vectors rounded)."""
    con = open_read_only(db_path)
    try:
        out = {
            "files": con.execute("SELECT file_id, path, kind, caption FROM files ORDER BY file_id").fetchall(),
            "chunks": con.execute("SELECT chunk_id, file_id, role, text FROM chunks ORDER BY chunk_id").fetchall(),
            "quarantine": con.execute("SELECT path, reason FROM quarantine ORDER BY path").fetchall(),
        }
        for (table,) in con.execute("SELECT table_name FROM encoders").fetchall():
            rows = con.execute(f"SELECT chunk_id, embedding FROM {table} ORDER BY chunk_id").fetchall()
            out[table] = [(cid, tuple(np.round(v, 5))) for cid, v in rows]
            duplicates = con.execute(f"SELECT count(*) - count(DISTINCT chunk_id) FROM {table}").fetchone()[0]
            assert duplicates == 0, f"{table}: one row per chunk"
        return out
    finally:
        con.close()


def rebuilt(settings, tmp_path) -> Path:
    """The same shards built from scratch into another home."""
    layout = Layout(tmp_path / "rebuilt", store_url=str(settings.home))
    update_vector_db(layout, stored_records(layout.store), serving_spec(settings), log=lambda _: None)
    return layout.db_path


def sync(defs, instance) -> dict:
    return run_requested(defs, instance, sensor_tick(defs, instance))


def churn(settings, defs, instance, tmp_path) -> None:
    """Three batches after the first: deletions, an edit and a move; a new file and a fixed one."""
    src = settings.sources[0]
    os.remove(src / "texts" / "latin1.txt")
    os.remove(src / "images" / "gray.bmp")
    (src / "texts" / "long.txt").write_text("an edited note about glaciers")
    os.rename(src / "images" / "photo.jpg", src / "images" / "moved.jpg")
    sync(defs, instance)
    gradient(30, 30, seed=11).save(src / "images" / "added.png")
    sync(defs, instance)
    (src / "texts" / "utf16.txt").write_text("utf16 rewritten as utf8")
    sync(defs, instance)


def test_updates_answer_exactly_as_a_rebuild_from_shards(settings, instance, tmp_path):
    defs = build_definitions(settings)
    sync(defs, instance)
    churn(settings, defs, instance, tmp_path)

    generation = read_generation(settings.db_path)
    assert len(generation.segments) == 4 and generation.dead_rows > 0, "each batch was applied as a segment"
    assert generation.live["chunks"] == len(snapshot(settings.db_path)["chunks"])
    fresh = rebuilt(settings, tmp_path)
    assert len(read_generation(fresh).segments) == 1
    assert snapshot(settings.db_path) == snapshot(fresh)
    query = settings.sources[0] / "images" / "moved.jpg"
    for path in (settings.db_path, fresh):
        hits = search(path, image=query, k=5)
        assert hits[0].path == str(query)
    assert [h.chunk_id for h in search(settings.db_path, image=query, k=20)] == [
        h.chunk_id for h in search(fresh, image=query, k=20)
    ]


def test_compaction_folds_segments_and_drops_dead_rows(settings, instance, tmp_path, monkeypatch):
    defs = build_definitions(settings)
    sync(defs, instance)
    churn(settings, defs, instance, tmp_path)
    before = snapshot(settings.db_path)
    old = read_generation(settings.db_path)
    layout = settings.layout
    assert vector_db.segments_to_merge(old) == [s.name for s in old.segments], "many dead rows: merge them all"
    # Size-tiered: with few dead rows, many segments fold into one beside the first, left as it is.
    monkeypatch.setattr(vector_db, "COMPACT_AT_DEAD_SHARE", 1.0)
    monkeypatch.setattr(vector_db, "COMPACT_AT_SEGMENTS", 3)
    with single_writer(layout):
        assert (
            compact(layout, serving_spec(settings), stored_records(layout.store), log=lambda _: None).mode == "compact"
        )
    tiered = read_generation(settings.db_path)
    assert [s.name for s in tiered.segments][:1] == [old.segments[0].name] and len(tiered.segments) == 2
    assert snapshot(settings.db_path) == before
    monkeypatch.undo()
    for expected in ("compact", "up to date"):
        with single_writer(layout):
            report = compact(layout, serving_spec(settings), stored_records(layout.store), log=lambda _: None)
        assert report.mode == expected
    generation = read_generation(settings.db_path)
    assert len(generation.segments) == 1 and generation.dead is None
    assert snapshot(settings.db_path) == before
    # the next writer removes what no generation uses any more
    (settings.sources[0] / "texts" / "new.txt").write_text("after compaction")
    sync(defs, instance)
    left = {f"{p.parent.name}/{p.name}" for p in settings.db_path.glob("*/*")}
    assert not any(f"segments/{s.name}.duckdb" in left for s in old.segments)
    assert left == read_generation(settings.db_path).files()


def test_hnsw_keeps_filters_working_and_applies_deletions(settings, instance, monkeypatch, tmp_path):
    src = settings.sources[0]
    for i in range(60):
        (src / "texts" / f"note_{i}.txt").write_text(f"note number {i} about harbours and tides")
    monkeypatch.setattr(segment_writer, "HNSW_MIN_ROWS", 1)  # index every segment, however small
    settings = replace(settings, hnsw=True)
    defs = build_definitions(settings)
    sync(defs, instance)
    assert read_generation(settings.db_path).segments[0].hnsw
    query = src / "images" / "photo.jpg"
    approximate = search(settings.db_path, text="note number 3", modality="image", k=3)
    exact = search(settings.db_path, text="note number 3", modality="image", k=3, exact=True)
    assert [h.chunk_id for h in approximate] == [h.chunk_id for h in exact] and len(exact) == 3

    os.remove(query)
    sync(defs, instance)
    assert str(query) not in {h.path for h in search(settings.db_path, text="photo", modality="image", k=50)}


WRITER = """
import sys
from mm_assets.assets.vector_tables import serving_spec
from mm_assets.config_loading import load_settings
from mm_assets.encoders.identity import stored_records
from mm_assets.store.vector_db import single_writer, update_vector_db
settings = load_settings()
layout = settings.layout
print("ready", flush=True)
sys.stdin.readline()
with single_writer(layout):
    update_vector_db(layout, stored_records(layout.store), serving_spec(settings), log=lambda _: None)
print("done", flush=True)
"""


def test_a_writer_killed_at_random_points_leaves_a_whole_generation_and_a_rerun_finishes(settings, instance, tmp_path):
    defs = build_definitions(settings)
    sync(defs, instance)
    src = settings.sources[0]
    gone = src / "texts" / "long.txt"
    os.remove(gone)
    gradient(30, 30, seed=12).save(src / "images" / "late.png")
    result = sensor_tick(defs, instance)
    (request,) = result.run_requests
    instance.add_dynamic_partitions("ingest_batches", [request.partition_key])
    # Everything but the vector tables: the update is pending.
    pending = [
        k for k in defs.resolve_job_def(INGEST_JOB).asset_layer.executable_asset_keys if k.path != ["vector_tables"]
    ]
    assert dg.materialize(
        list(defs.assets),
        selection=pending,
        partition_key=request.partition_key,
        instance=instance,
        resources=dict(defs.resources),
    ).success
    before = snapshot(settings.db_path)
    env = {
        **os.environ,
        "MM_ASSETS_HOME": str(settings.home),
        "MM_ASSETS_MODEL": settings.encoders[0].model,
        "MM_ASSETS_SOURCES": str(src),
    }
    rng = random.Random(0)
    for _ in range(10):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline().strip() == "ready"
        writer.stdin.write("go\n")
        writer.stdin.flush()
        time.sleep(rng.uniform(0.0, 0.4))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        now = snapshot(settings.db_path)  # always a whole generation: the old one or the new one
        assert now == before or str(gone) not in {p for _, p, _, _ in now["files"]}
    subprocess.run([sys.executable, "-c", WRITER], env=env, input="go\n", text=True, check=True, capture_output=True)
    after = snapshot(settings.db_path)
    assert after == snapshot(rebuilt(settings, tmp_path))
    paths = {p for _, p, _, _ in after["files"]}
    assert str(gone) not in paths and str(src / "images" / "late.png") in paths
    left = {f"{p.parent.name}/{p.name}" for p in settings.db_path.glob("*/*")}
    assert left == read_generation(settings.db_path).files(), "no temporaries left behind"


def test_known_vectors_are_found_in_the_served_generation_without_reading_every_shard(settings, instance, monkeypatch):
    from mm_assets.encoders.batch import plan_batch
    from mm_assets.store.shards import ShardStore

    defs = build_definitions(settings)
    sync(defs, instance)
    images = settings.sources[0] / "images"
    os.rename(images / "photo.jpg", images / "renamed.jpg")
    gradient(40, 30, seed=21).save(images / "new.png")
    (request,) = sensor_tick(defs, instance).run_requests
    batch = request.partition_key
    instance.add_dynamic_partitions("ingest_batches", [batch])
    assert dg.materialize(
        list(defs.assets),
        selection=["raw_files", "chunks"],
        partition_key=batch,
        instance=instance,
        resources=dict(defs.resources),
    ).success

    read = []
    original = ShardStore.read_table
    monkeypatch.setattr(
        ShardStore, "read_table", lambda self, key, columns=None: read.append(key) or original(self, key, columns)
    )
    plan = plan_batch(settings.layout, batch, settings.encoders[0])
    assert len(plan.chunks) == 2 and len(plan.todo) == 1, "only the new image is embedded"
    assert plan.done == {c["chunk_id"] for c in plan.chunks} - {c["chunk_id"] for c in plan.todo}
    assert not [key for key in read if key.startswith("shards/embeddings/")], "no embedding shard was read"


def test_an_update_with_invalid_vectors_is_refused_and_search_keeps_the_last_generation(indexed, instance):
    """vector_tables verifies a segment before publishing it: vectors that are not of unit length
    (here: a batch's shard rewritten with doubled vectors) fail the run with the reason, and readers
    keep the generation they had."""
    settings = indexed
    served = read_generation(settings.db_path).number
    new_image = settings.sources[0] / "images" / "new.png"
    gradient(80, 60, seed=9).save(new_image)
    batch = create_batch(settings.layout, settings.sources)
    instance.add_dynamic_partitions("ingest_batches", [batch])
    job = build_definitions(settings).resolve_job_def(INGEST_JOB)
    embeddings = dg.AssetKey(["embeddings", "clip"])
    assert job.execute_in_process(
        partition_key=batch,
        instance=instance,
        asset_selection=[dg.AssetKey("raw_files"), dg.AssetKey("chunks"), embeddings],
    ).success
    store = settings.layout.store
    shard = store.shard(EMBEDDINGS, batch, encoder_key(settings.encoders[0]))
    written = store.read_table(shard)
    doubled = np.stack(written.column("embedding").to_numpy(zero_copy_only=False)) * 2
    store.write_table(
        shard,
        pa.Table.from_arrays(
            [written.column("chunk_id"), pa.array(list(doubled), written.schema.field("embedding").type)],
            schema=written.schema,
        ),
    )

    result = job.execute_in_process(
        partition_key=batch, instance=instance, asset_selection=[dg.AssetKey("vector_tables")], raise_on_error=False
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "not published: 1 vector(s) not of unit length" in failure.step_failure_data.error.to_string()
    assert read_generation(settings.db_path).number == served
    hits = search(settings.db_path, image=new_image, k=20)
    assert hits and str(new_image) not in {h.path for h in hits}
