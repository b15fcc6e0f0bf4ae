"""Run the real Definitions against a temp home, as the UI or the sensor would."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import dagster as dg
import numpy as np
import uvicorn

from mm_assets.assets.common import ingest_batches
from mm_assets.chunking import chunking_params
from mm_assets.config import EncoderConfig, Settings
from mm_assets.config_sections import ChunkingConfig
from mm_assets.definitions import INGEST_JOB, build_definitions
from mm_assets.formats.reading import Boundary
from mm_assets.ingest.batches import create_batch
from mm_assets.ingest.discover import FoundFile
from mm_assets.ingest.inspect import inspect_file
from mm_assets.store.segments import open_read_only


def ingest_with_dagster(settings: Settings, instance: dg.DagsterInstance) -> tuple[str, dg.ExecuteInProcessResult]:
    """Discover new files into a batch and materialize every asset for it with ``dagster.materialize``."""
    batch = create_batch(settings.layout, settings.sources)
    assert batch is not None, "expected new files"
    instance.add_dynamic_partitions(ingest_batches.name, [batch])
    defs = build_definitions(settings)
    result = dg.materialize(list(defs.assets), partition_key=batch, instance=instance, resources=dict(defs.resources))
    return batch, result


def sensor_tick(defs: dg.Definitions, instance: dg.DagsterInstance, name="new_files_sensor", cursor=None):
    """One evaluation of a sensor (by default the new-files one), as the daemon would run it."""
    sensor = defs.resolve_sensor_def(name)
    context = dg.build_sensor_context(
        instance=instance, resources=dict(defs.resources), repository_def=defs.get_repository_def(), cursor=cursor
    )
    return sensor(context)


def run_requested(defs, instance, result, encoder: str = "clip") -> dict:
    """Apply the sensor's partition request and execute its run, as the daemon would; the metadata of
    the run's raw_files and embeddings materializations, the latter's keys prefixed with the encoder."""
    (request,) = result.run_requests
    for partitions_request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(partitions_request.partitions_def_name, partitions_request.partition_keys)
    run = defs.resolve_job_def(INGEST_JOB).execute_in_process(partition_key=request.partition_key, instance=instance)
    assert run.success
    raw = run.asset_materializations_for_node("raw_files")[0].metadata
    embedded = run.asset_materializations_for_node(f"embeddings__{encoder}")[0].metadata
    return {k: v.value for k, v in raw.items()} | {k: v.value for k, v in embedded.items()}


def db_rows(settings: Settings, sql: str, params=None) -> list[tuple]:
    con = open_read_only(settings.db_path)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def stored_vectors(settings: Settings, table: str) -> tuple[list[str], np.ndarray]:
    rows = db_rows(settings, f"SELECT chunk_id, embedding FROM {table} ORDER BY chunk_id")
    return [r[0] for r in rows], np.asarray([r[1] for r in rows], dtype=np.float32)


# The limits of the default settings, for calling inspect_file directly.
INSPECT_LIMITS = Settings(home=Path(".")).inspection_limits


def inspect(path, **limits) -> dict:
    """The raw_files row of one file, as the ingest step writes it (default limits unless given)."""
    st = path.stat()
    return inspect_file(FoundFile(str(path), st.st_size, st.st_mtime_ns), replace(INSPECT_LIMITS, **limits))


def params_for(tiny_clip, tmp_path, **chunking) -> dict:
    """Chunking parameters per file kind for settings with these chunking options."""
    settings = Settings(
        home=tmp_path, encoders=(EncoderConfig(name="clip", model=str(tiny_clip)),), chunking=ChunkingConfig(**chunking)
    )
    return chunking_params(settings)


def by_role(rows: list[dict], role: str) -> list[dict]:
    return [r for r in rows if r["role"] == role]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(settings: Settings, token: str | None = None) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread of this process."""
    from mm_assets.service.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, token=token), host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def clip_and_clap_settings(root: Path, tiny_clip: Path, tiny_clap: Path) -> Settings:
    """Sources in root/src, data in root/home, a CLIP encoder (default) and a CLAP one for audio."""
    return Settings(
        home=root / "home",
        sources=(root / "src",),
        encoders=(
            EncoderConfig(name="clip", model=str(tiny_clip), batch_size=4),
            EncoderConfig(name="clap", model=str(tiny_clap), modalities=("audio",), batch_size=2),
        ),
        decode_workers=2,
    )


def chunk_limits(root: Path) -> dict:
    """The keyword arguments of chunk_file and chunk_text for files under ``root``."""
    return {"boundary": Boundary.of([root]), "max_pixels": 10**8, "max_bytes": 2**30}
