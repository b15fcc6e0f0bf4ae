"""vector_tables: the served vector database, updated in place from the new shards by one writer at a
time; and the job that compacts its segments when that pays."""

import dagster as dg

from mm_assets.assets.common import OWNERS, Storage, column_schema, markdown_table, tags
from mm_assets.config import Settings
from mm_assets.encoders.identity import encoder_key, stored_records
from mm_assets.store.catalog import EncoderTable, served_columns
from mm_assets.store.segments import (
    SEGMENT_TABLES,
    SERVING_VERSION,
    ServingSpec,
    embedding_tables,
    open_generation,
    read_generation,
)
from mm_assets.store.vector_db import UpdateReport, compact, single_writer, update_vector_db

COMPACTION_JOB = "compact_vector_tables"


def serving_spec(settings: Settings) -> ServingSpec:
    """The configured encoders, the default one (decided in config.Settings) and HNSW."""
    return ServingSpec(
        current={e.name: encoder_key(e) for e in settings.encoders},
        default_key=encoder_key(settings.default_encoder),
        hnsw=settings.hnsw,
    )


def report_metadata(storage: Storage, report: UpdateReport) -> dict:
    """What an update or a compaction did, and the encoders served after it."""
    layout = storage.layout
    # The generation just published lists its encoders: no need to open its segments again.
    rows = read_generation(layout.db_path).encoders
    encoders = sorted((EncoderTable.from_row(r).summary() for r in rows), key=lambda e: e["table"])
    size = sum(p.stat().st_size for p in layout.db_path.rglob("*") if p.is_file())
    con, generation = open_generation(layout.db_path)
    try:
        columns = served_columns(con, [*SEGMENT_TABLES, *embedding_tables(generation)])
    finally:
        con.close()
    schemas = {table: column_schema(cols) for table, cols in columns.items()}
    return {
        # Dagster's standard keys describe the table search reads first; every table's columns follow.
        "dagster/uri": str(layout.db_path),
        "dagster/table_name": "chunks",
        "dagster/row_count": report.live.get("chunks", 0),
        "dagster/column_schema": schemas["chunks"],
        **{f"columns/{table}": schema for table, schema in schemas.items()},
        "mode": report.mode,
        "generation": report.generation,
        "segments": report.segments,
        **{f"rows_{name}": n for name, n in report.live.items()},
        **{f"added_{name}": n for name, n in report.added.items() if n},
        **{f"deleted_{name}": n for name, n in report.deleted.items() if n},
        "encoders": markdown_table(encoders, list(encoders[0]) if encoders else []),
        "hnsw_build_seconds": round(report.hnsw_seconds, 3),
        "seconds": round(report.seconds, 3),
        "size_bytes": size,
    }


# What an update verifies before publishing (segment_writer.SegmentWriter._check_vectors), as checks. The
# first two refuse the update when they fail (search keeps the previous generation) and block
# retrieval_eval; a chunk without a vector (its embedding failed) only warns.
SERVING_CHECKS = {
    "vectors_unit_norm": ("not_unit_norm", "every served vector is finite, of unit length, of its encoder's dimension"),
    "one_vector_per_chunk": ("duplicate_vectors", "one row per (chunk, encoder)"),
    "every_live_chunk_has_a_vector": (
        "chunks_without_vector",
        "every live chunk of a modality an encoder covers has its vector (a chunk whose embedding failed has none)",
    ),
}


REFUSING_CHECKS = ("vectors_unit_norm", "one_vector_per_chunk")


def serving_check_results(report: UpdateReport) -> list[dg.AssetCheckResult]:
    results = []
    for name, (figure, _) in SERVING_CHECKS.items():
        failing = {table: found[figure] for table, found in report.checks.items() if found[figure]}
        results.append(
            dg.AssetCheckResult(
                check_name=name,
                passed=not failing,
                severity=dg.AssetCheckSeverity.WARN
                if name == "every_live_chunk_has_a_vector"
                else dg.AssetCheckSeverity.ERROR,
                metadata={"failing_tables": failing, "checked": report.checks, "mode": report.mode},
            )
        )
    return results


def build_vector_tables_asset(settings: Settings, upstream: list):
    @dg.asset(
        group_name="serving",
        owners=OWNERS,
        tags=tags("serve"),
        kinds={"duckdb"},
        code_version=f"{SERVING_VERSION}-{'hnsw' if settings.hnsw else 'exact'}",
        deps=upstream,
        description="The served vector database: files, chunks, quarantine, encoders and one FLOAT[dim] "
        "table per encoder fingerprint (old fingerprints kept for comparison), in segments. Each run "
        "applies only the shards written since the last (adds, edits, deletions) as one new segment.",
        check_specs=[
            dg.AssetCheckSpec(name, asset="vector_tables", description=description, blocking=name in REFUSING_CHECKS)
            for name, (_, description) in SERVING_CHECKS.items()
        ],
    )
    def vector_tables(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
        layout = storage.layout
        with single_writer(layout):
            report = update_vector_db(layout, stored_records(layout.store), serving_spec(settings), context.log.info)
            leftovers = layout.store.remove_stale_temporaries()
        for key in leftovers:
            context.log.info(f"removed {key}, left by a killed writer")
        context.log.info(f"{report.mode}: added {report.added}, deleted {report.deleted} in {report.seconds:.2f}s")
        return dg.MaterializeResult(
            metadata={**report_metadata(storage, report), "stale_temporaries_removed": len(leftovers)},
            check_results=serving_check_results(report),
        )

    return vector_tables


def build_compaction_job(settings: Settings) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """Compaction as its own job, on an hourly schedule: it does nothing unless the segments or the
    dead rows have grown past what pays (vector_db.segments_to_merge)."""

    @dg.op(description="Fold the vector database's segments into one when that pays.")
    def compact_segments(context: dg.OpExecutionContext, storage: Storage) -> None:
        layout = storage.layout
        with single_writer(layout):
            report = compact(layout, serving_spec(settings), stored_records(layout.store), context.log.info)
        context.log.info(f"{report.mode}: {report.segments} segment(s) after, in {report.seconds:.2f}s")
        context.log_event(
            dg.AssetObservation(asset_key=dg.AssetKey("vector_tables"), metadata=report_metadata(storage, report))
        )

    @dg.job(name=COMPACTION_JOB, description="Compact the vector database's segments when that pays.")
    def compact_job():
        compact_segments()

    schedule = dg.ScheduleDefinition(
        job=compact_job, cron_schedule="17 * * * *", default_status=dg.DefaultScheduleStatus.RUNNING
    )
    return compact_job, schedule
