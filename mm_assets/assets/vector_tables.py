"""vector_tables: the DuckDB serving file, rebuilt from every shard by one writer at a time."""

import dagster as dg

from mm_assets.assets.common import Storage, markdown_table
from mm_assets.config import Settings
from mm_assets.encoders.identity import encoder_key, stored_records
from mm_assets.store.catalog import list_encoder_tables, open_read_only
from mm_assets.store.vector_db import VECTOR_DB_VERSION, ServingSpec, build_vector_db, single_writer


def serving_spec(settings: Settings) -> ServingSpec:
    """The configured encoders, the default one (decided in config.Settings) and HNSW."""
    return ServingSpec(
        current={e.name: encoder_key(e) for e in settings.encoders},
        default_key=encoder_key(settings.default_encoder),
        hnsw=settings.hnsw,
    )


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
        with single_writer(layout):
            records = stored_records(layout.store)
            report = build_vector_db(layout, records, serving_spec(settings), context.log.info)
            leftovers = layout.store.remove_stale_temporaries()
        for key in leftovers:
            context.log.info(f"removed {key}, left by a killed writer")
        con = open_read_only(layout.db_path)
        try:
            encoders = sorted((t.summary() for t in list_encoder_tables(con)), key=lambda e: e["table"])
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
