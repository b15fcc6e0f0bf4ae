"""raw_files and chunks: one ingest batch at a time."""

import time
from collections import Counter
from dataclasses import asdict
from itertools import groupby

import dagster as dg
import pyarrow as pa

from mm_assets.assets.common import (
    OWNERS,
    Storage,
    ingest_batches,
    markdown_table,
    require_batch,
    table_metadata,
    tags,
)
from mm_assets.chunking import CHUNKER_VERSION, chunking_params, text_chunker
from mm_assets.chunking.by_kind import chunk_batch
from mm_assets.config import Settings
from mm_assets.config_loading import describe_settings
from mm_assets.hashing import short_hash
from mm_assets.ingest.batches import deleted_rows, mark_moves, read_manifest
from mm_assets.ingest.inspect import INGEST_VERSION, inspect_batch
from mm_assets.ingest.labels import CaptionIndex
from mm_assets.progress import Progress
from mm_assets.store.tables import (
    CHUNK_FAILURES,
    CHUNK_FAILURES_SCHEMA,
    CHUNKS,
    CHUNKS_SCHEMA,
    RAW_FILES,
    RAW_FILES_SCHEMA,
    upgrade,
)


def build_ingest_assets(settings: Settings) -> list:
    @dg.asset(
        partitions_def=ingest_batches,
        group_name="ingest",
        owners=OWNERS,
        tags=tags("ingest"),
        kinds={"python", "parquet"},
        code_version=f"{INGEST_VERSION}-{short_hash(asdict(settings.inspection_limits), 6)}",
        description="Every file of the batch: content hash, type sniffed from content, metadata; "
        "bad files quarantined with a reason; deleted paths as tombstones. Counts files added, edited, "
        "moved and deleted.",
    )
    def raw_files(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
        layout = storage.layout
        batch = require_batch(context, layout)
        chosen = [
            f"{key}={value} ({origin})" for key, value, origin in describe_settings(settings) if origin != "default"
        ]
        context.log.info("settings not at their defaults: " + ("; ".join(chosen) or "none"))
        manifest = read_manifest(layout, batch)
        captions = CaptionIndex(manifest.boundary)
        with Progress(len(manifest.files), "ingest", context.log.info, unit="file") as progress:
            rows = inspect_batch(
                manifest.files,
                manifest.rejected,
                captions,
                settings.inspection_limits,
                workers=settings.decode_workers,
                progress=progress,
            )
        rows += deleted_rows(layout.store, manifest.deleted)
        changes = mark_moves(rows)
        now = time.time()
        for row in rows:
            row.update(batch=batch, ingested_at=now)
        table = pa.Table.from_pylist(rows, schema=RAW_FILES_SCHEMA)
        key = layout.store.shard(RAW_FILES, batch)
        layout.store.write_table(key, table)
        bad = [r for r in rows if r["status"] == "quarantined"]
        ok = [r for r in rows if r["status"] == "ok"]
        for r in bad:
            context.log.warning(f"quarantined {r['path']}: {r['reason']}")
        return dg.MaterializeResult(
            metadata={
                **table_metadata(table, layout.store.uri(key)),
                **{f"files_{change}": n for change, n in changes.items()},
                "changed_paths": markdown_table(
                    [r for r in rows if r["change"] != "added" or r["status"] != "ok"], ["change", "path"]
                ),
                "files_ok": len(ok),
                "files_quarantined": len(bad),
                "by_kind": dict(Counter(r["kind"] for r in ok)),
                "captioned_images": sum(1 for r in ok if r.get("caption")),
                "caption_manifest_errors": captions.errors,
                "bytes": sum(r["size"] or 0 for r in ok),
                "quarantine": markdown_table(bad, ["path", "reason"]),
            }
        )

    params = chunking_params(settings)

    @dg.asset(
        partitions_def=ingest_batches,
        group_name="ingest",
        owners=OWNERS,
        tags=tags("chunk"),
        kinds={"python", "parquet"},
        deps=[raw_files],
        code_version=f"{CHUNKER_VERSION}-{short_hash(params, 6)}",
        description="Text windows that fit the CLIP text tower (by the configured strategy); whole images "
        "(and tiles); PDF pages' text, figures and captions; markdown/HTML linked images with alt text; "
        "video frames and subtitles; audio windows. In reading order, linked to their section.",
        check_specs=[dg.AssetCheckSpec("every_file_has_chunks", asset="chunks", partitions_def=ingest_batches)],
    )
    def chunks(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
        store, batch = storage.layout.store, require_batch(context, storage.layout)
        raw = upgrade(store.read_table(store.shard(RAW_FILES, batch)), RAW_FILES)
        files = [r for r in raw.to_pylist() if r["status"] == "ok"]
        # Images and audio are cut without text: a batch of only those loads no tokenizer (seconds).
        has_text = any(f["kind"] not in ("image", "audio") for f in files)
        chunker = text_chunker(settings, params["text"]) if has_text else None
        with Progress(len(files), "chunk", context.log.info, unit="file") as progress:
            found = chunk_batch(
                files,
                chunker,
                params,
                boundary=read_manifest(storage.layout, batch).boundary,
                max_pixels=settings.max_image_pixels,
                max_bytes=settings.max_file_bytes,
                max_seconds=settings.max_seconds_per_file,
                progress=progress,
            )
        for f in found.failures:
            context.log.warning(f"could not chunk {f['path']}: {f['reason']}")
        # One line per file however many problems it has (a page with thousands of dead links).
        for path, problems in groupby(found.problems, key=lambda p: p["path"]):
            problems = [p["problem"] for p in problems]
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            context.log.warning(f"{path}: {len(problems)} problem(s): {'; '.join(problems[:3])}{more}")
        for row in found.rows:
            row["batch"] = batch
        table = pa.Table.from_pylist(found.rows, schema=CHUNKS_SCHEMA)
        key = store.shard(CHUNKS, batch)
        store.write_table(key, table)
        # Files that gave no chunks go to the quarantine table with their reason (always written, so a
        # rematerialization that fixes them clears them).
        failed = [{**f, "batch": batch} for f in found.failures]
        store.write_table(store.shard(CHUNK_FAILURES, batch), pa.Table.from_pylist(failed, CHUNK_FAILURES_SCHEMA))
        chunked = {r["file_id"] for r in found.rows}
        missing = [f for f in files if f["file_id"] not in chunked]
        return dg.MaterializeResult(
            metadata={
                **table_metadata(table, store.uri(key)),
                "by_modality": dict(Counter(r["modality"] for r in found.rows)),
                "by_role": dict(Counter(r["role"] for r in found.rows)),
                "chunker_version": CHUNKER_VERSION,
                "params": params,
                "max_text_tokens": max((r["n_tokens"] for r in found.rows if r["n_tokens"]), default=0),
                "failures": markdown_table(found.failures, ["path", "reason"]),
                "problems": markdown_table(found.problems, ["path", "problem"]),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="every_file_has_chunks",
                    passed=not missing,
                    metadata={"files": len(files), "files_without_chunks": [m["path"] for m in missing][:20]},
                )
            ],
        )

    return [raw_files, chunks]
