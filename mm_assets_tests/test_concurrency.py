"""Parallel runs as a deployment makes them: the daemon's queued run coordinator, the multiprocess
executor, and the `gpu` pool set to one slot, with batches that share content."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mm_assets.assets.common import ingest_batches
from mm_assets.assets.vector_tables import serving_spec
from mm_assets.config_loading import load_settings
from mm_assets.ingest.batches import create_batch
from mm_assets.store.vector_db import is_up_to_date
from mm_assets_tests.corpus import gradient
from mm_assets_tests.helpers import db_rows

N_BATCHES, MAX_CONCURRENT_RUNS = 8, 4
EMBED_STEP = "embeddings__clip"


def write_batch_folder(folder: Path, index: int, shared: bytes) -> None:
    folder.mkdir(parents=True)
    for i in range(5):
        gradient(40 + 8 * i, 32 + 4 * index, seed=100 * index + i).save(folder / f"img_{i}.png")
    (folder / "shared.png").write_bytes(shared)  # the same content in every batch, embedded at once
    (folder / "note.txt").write_text(f"Batch {index} holds five gradients and one picture all batches share.")


def overlaps(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    best = current = 0
    for _, step in edges:
        current += step
        best = max(best, current)
    return best


@pytest.fixture
def deployment(tmp_path, tiny_clip, dagster_home):
    """A DAGSTER_HOME with the queued run coordinator (4 runs at a time) and the gpu pool at 1 slot."""
    (dagster_home / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                "telemetry": {"enabled": False},
                "run_coordinator": {
                    "module": "dagster.core.run_coordinator",
                    "class": "QueuedRunCoordinator",
                    "config": {"max_concurrent_runs": MAX_CONCURRENT_RUNS, "dequeue_interval_seconds": 1},
                },
            }
        )
    )
    config = tmp_path / "mm_assets.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "home": "home",
                "encoders": [{"name": "clip", "model": str(tiny_clip), "batch_size": 4}],
                "decode_workers": 1,
            }
        )
    )
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": "mm_assets.definitions"}]}))
    env = {**os.environ, "MM_ASSETS_CONFIG": str(config)}
    settings = load_settings(config)
    with dg.DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots("gpu", 1)  # = `dagster instance concurrency set gpu 1`
        yield settings, instance, env, workspace


def test_eight_batches_in_four_concurrent_runs_embed_each_chunk_once_one_run_on_the_gpu_at_a_time(deployment, tmp_path):
    settings, instance, env, workspace = deployment
    shared = _png_bytes()
    batches = []
    for index in range(N_BATCHES):
        folder = tmp_path / "src" / f"part{index}"
        write_batch_folder(folder, index, shared)
        batches.append(create_batch(settings.layout, [folder]))
    instance.add_dynamic_partitions(ingest_batches.name, batches)

    bin_dir = Path(sys.executable).parent
    daemon = subprocess.Popen(
        [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        subprocess.run(
            [str(bin_dir / "dagster"), "job", "backfill", "-w", str(workspace), "-j", "ingest_job"]
            + ["--partitions", ",".join(batches), "--noprompt"],
            env=env,
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 600
        while True:
            records = instance.get_run_records()
            if len(records) == N_BATCHES and all(r.dagster_run.is_finished for r in records):
                break
            assert time.monotonic() < deadline, [r.dagster_run.status for r in records]
            time.sleep(2)
    finally:
        daemon.terminate()
        daemon.wait(30)

    failed = [r.dagster_run.run_id for r in records if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS]
    assert not failed, [e.message for run_id in failed for e in instance.all_logs(run_id) if e.level >= logging.ERROR]

    # The queue let up to four runs work at once, and never more.
    runs = [(r.start_time, r.end_time) for r in records]
    assert 2 <= overlaps(runs) <= MAX_CONCURRENT_RUNS

    # The gpu pool: one embedding step at a time across all runs, so some run waited for it.
    embedding_steps = []
    for record in records:
        starts = instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START)
        ends = instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
        start = next(e.timestamp for e in starts if e.step_key == EMBED_STEP)
        end = next(e.timestamp for e in ends if e.step_key == EMBED_STEP)
        embedding_steps.append((start, end))
    assert overlaps(embedding_steps) == 1
    blocked = [
        e.message
        for r in records
        for e in instance.all_logs(r.dagster_run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        if e.step_key == EMBED_STEP and "blocked by limit for pool gpu" in e.message
    ]
    assert blocked, "with four runs at once, some embedding step must have waited for the gpu slot"

    # Exactly one row per (chunk, encoder), and the database reflects every shard.
    assert is_up_to_date(settings.layout, serving_spec(settings))
    [(table,)] = db_rows(settings, "SELECT table_name FROM encoders")
    n_rows, n_distinct = db_rows(settings, f"SELECT count(*), count(DISTINCT chunk_id) FROM {table}")[0]
    store = settings.layout.store
    chunk_ids = {
        c["chunk_id"] for b in batches for c in store.read_table(store.shard("chunks", b), ["chunk_id"]).to_pylist()
    }
    assert n_rows == n_distinct == len(chunk_ids) == N_BATCHES * 6 + 1  # 5 gradients + 1 note each, 1 shared
    assert db_rows(settings, "SELECT count(*) FROM chunks")[0][0] == len(chunk_ids)


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    gradient(48, 48, seed=7).save(buffer, format="PNG")
    return buffer.getvalue()
