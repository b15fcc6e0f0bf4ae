"""Run the real Definitions against a temp home, as the UI or the sensor would."""

from __future__ import annotations

import dagster as dg
import numpy as np

from mm_assets.assets.common import ingest_batches
from mm_assets.config import Settings
from mm_assets.definitions import build_definitions
from mm_assets.ingest.batches import create_batch
from mm_assets.store.vector_db import open_read_only


def ingest_with_dagster(settings: Settings, instance: dg.DagsterInstance) -> tuple[str, dg.ExecuteInProcessResult]:
    """Discover new files into a batch and materialize every asset for it with ``dagster.materialize``."""
    batch = create_batch(settings.layout, settings.sources)
    assert batch is not None, "expected new files"
    instance.add_dynamic_partitions(ingest_batches.name, [batch])
    defs = build_definitions(settings)
    result = dg.materialize(list(defs.assets), partition_key=batch, instance=instance, resources=dict(defs.resources))
    return batch, result


def db_rows(settings: Settings, sql: str, params=None) -> list[tuple]:
    con = open_read_only(settings.db_path)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def stored_vectors(settings: Settings, table: str) -> tuple[list[str], np.ndarray]:
    rows = db_rows(settings, f"SELECT chunk_id, embedding FROM {table} ORDER BY chunk_id")
    return [r[0] for r in rows], np.asarray([r[1] for r in rows], dtype=np.float32)
