"""vector_tables: the DuckDB serving file, rebuilt from every shard by one writer at a time."""

import fcntl
from contextlib import contextmanager

import dagster as dg

from mm_assets.assets.common import Storage, markdown_table
from mm_assets.config import Settings
from mm_assets.store.layout import Layout
from mm_assets.store.vector_db import build_vector_db, open_read_only


@contextmanager
def single_writer(layout: Layout):
    """Serialise rebuilds: each starts after the previous one, so the last rebuild sees every shard."""
    layout.home.mkdir(parents=True, exist_ok=True)
    with open(layout.writer_lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# Bumped when the database layout changes.
VECTOR_DB_VERSION = "1"


def build_vector_tables_asset(settings: Settings, upstream: list):
    @dg.asset(
        group_name="vector_tables",
        kinds={"duckdb"},
        code_version=f"{VECTOR_DB_VERSION}-{'hnsw' if settings.hnsw else 'exact'}",
        deps=upstream,
        description="DuckDB file with files, chunks, quarantine, encoders and one FLOAT[dim] table per "
        "encoder fingerprint (old fingerprints kept for comparison); HNSW index when configured.",
    )
    def vector_tables(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
        layout = storage.layout
        current = {e.name: e.key for e in settings.encoders}
        with single_writer(layout):
            report = build_vector_db(layout, current, settings.default_encoder.key, settings.hnsw, context.log.info)
            leftovers = layout.store.remove_stale_temporaries()
        for key in leftovers:
            context.log.info(f"removed {key}, left by a killed writer")
        con = open_read_only(layout.db_path)
        try:
            encoders = [
                dict(zip(("table", "encoder", "model", "revision", "dim", "current", "rows"), r))
                for r in con.execute("""SELECT table_name, name, model_id, revision, embedding_dim,
                                                is_current, n_vectors FROM encoders ORDER BY name, key""").fetchall()
            ]
        finally:
            con.close()
        return dg.MaterializeResult(
            metadata={
                "database": dg.MetadataValue.path(str(layout.db_path)),
                "dagster/row_count": report.tables.get("chunks", 0),
                **{f"rows_{name}": n for name, n in report.tables.items()},
                "encoders": markdown_table(encoders, list(encoders[0]) if encoders else []),
                "hnsw": settings.hnsw,
                "hnsw_build_seconds": round(report.hnsw_seconds, 3),
                "build_seconds": round(report.seconds, 3),
                "size_bytes": layout.db_path.stat().st_size,
                "stale_temporaries_removed": len(leftovers),
            }
        )

    return vector_tables
