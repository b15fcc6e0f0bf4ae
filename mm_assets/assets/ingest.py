"""raw_files and chunks: one ingest batch at a time."""

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pyarrow as pa

from mm_assets.assets.common import Storage, ingest_batches, markdown_table, table_metadata
from mm_assets.chunking import CHUNKER_VERSION, chunking_params
from mm_assets.chunking.files import chunk_file
from mm_assets.chunking.rows import CHUNKS_SCHEMA
from mm_assets.chunking.text import TextChunker
from mm_assets.config import Settings, short_hash
from mm_assets.encoders.resolve import resolve_model
from mm_assets.ingest import failure_reason
from mm_assets.ingest.batches import read_manifest
from mm_assets.ingest.files import RAW_FILES_SCHEMA, inspect_file, rejected_row
from mm_assets.ingest.labels import CaptionIndex
from mm_assets.progress import Progress

# Bumped when ingest code changes what it records for the same file.
INGEST_VERSION = "2"


def build_ingest_assets(settings: Settings) -> list:
    @dg.asset(
        partitions_def=ingest_batches,
        group_name="ingest",
        kinds={"python", "parquet"},
        code_version=f"{INGEST_VERSION}-{short_hash([settings.max_image_pixels, settings.max_file_bytes], 6)}",
        description="Every file of the batch: content hash, type sniffed from content, metadata; "
        "bad files quarantined with a reason.",
    )
    def raw_files(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
        layout, batch = storage.layout, context.partition_key
        files, rejected = read_manifest(layout, batch)
        captions = CaptionIndex()
        with (
            Progress(len(files), f"ingest {batch}", context.log.info) as progress,
            ThreadPoolExecutor(settings.decode_workers) as pool,
        ):

            def inspect(entry):
                row = inspect_file(
                    entry, max_image_pixels=settings.max_image_pixels, max_file_bytes=settings.max_file_bytes
                )
                if row["modality"] == "image" and row["status"] == "ok":
                    row["caption"], row["label"] = captions.lookup(entry.path)
                progress()
                return row

            rows = list(pool.map(inspect, files)) + [rejected_row(r.path, r.reason) for r in rejected]
        now = time.time()
        for row in rows:
            row.update(batch=batch, ingested_at=now)
        table = pa.Table.from_pylist(rows, schema=RAW_FILES_SCHEMA)
        key = layout.store.shard("raw_files", batch)
        layout.store.write_table(key, table)
        bad = [r for r in rows if r["status"] == "quarantined"]
        ok = [r for r in rows if r["status"] == "ok"]
        for r in bad:
            context.log.warning(f"quarantined {r['path']}: {r['reason']}")
        return dg.MaterializeResult(
            metadata={
                **table_metadata(table, layout.store.uri(key)),
                "files_ok": len(ok),
                "files_quarantined": len(bad),
                "by_modality": dict(Counter(r["modality"] for r in ok)),
                "captioned_images": sum(1 for r in ok if r.get("caption")),
                "caption_manifest_errors": captions.errors,
                "bytes": sum(r["size"] or 0 for r in ok),
                "quarantine": markdown_table(bad, ["path", "reason"]),
            }
        )

    params = chunking_params(settings)

    @dg.asset(
        partitions_def=ingest_batches,
        group_name="chunking",
        kinds={"python", "parquet"},
        deps=[raw_files],
        code_version=f"{CHUNKER_VERSION}-{short_hash(params, 6)}",
        description="Text windows that fit the CLIP text tower (by the configured strategy); whole images "
        "(and tiles); PDF pages' text, figures and captions; markdown/HTML linked images with alt text; "
        "video frames and subtitles; audio windows. In reading order, linked to their section.",
        check_specs=[dg.AssetCheckSpec("every_file_has_chunks", asset="chunks")],
    )
    def chunks(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
        store, batch = storage.layout.store, context.partition_key
        files = [r for r in store.read_table(store.shard("raw_files", batch)).to_pylist() if r["status"] == "ok"]
        # Imported when the step runs, not when the definitions load (see mm_assets/assets/__init__.py).
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolve_model(settings.tokenizer_source).local_dir)
        chunker = TextChunker(tokenizer, params["text"], _sentence_embedder(settings))
        rows, failures, problems = [], [], []
        with Progress(len(files), f"chunk {batch}", context.log.info) as progress:
            for f in files:
                try:
                    found = chunk_file(
                        f, chunker, params, max_pixels=settings.max_image_pixels, max_bytes=settings.max_file_bytes
                    )
                    rows.extend(found.rows)
                    problems += [{"path": f["path"], "problem": p} for p in found.problems]
                except Exception as exc:
                    reason = failure_reason(exc)
                    failures.append({"path": f["path"], "reason": reason})
                    context.log.warning(f"could not chunk {f['path']}: {reason}")
                progress()
        for p in problems:
            context.log.warning(f"{p['path']}: {p['problem']}")
        table = pa.Table.from_pylist(rows, schema=CHUNKS_SCHEMA)
        key = store.shard("chunks", batch)
        store.write_table(key, table)
        chunked = {r["file_id"] for r in rows}
        missing = [f for f in files if f["file_id"] not in chunked]
        return dg.MaterializeResult(
            metadata={
                **table_metadata(table, store.uri(key)),
                "by_modality": dict(Counter(r["modality"] for r in rows)),
                "by_source": dict(Counter(r["source"] for r in rows)),
                "chunker_version": CHUNKER_VERSION,
                "params": params,
                "max_text_tokens": max((r["n_tokens"] for r in rows if r["n_tokens"]), default=0),
                "failures": markdown_table(failures, ["path", "reason"]),
                "problems": markdown_table(problems, ["path", "problem"]),
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


def _sentence_embedder(settings: Settings):
    """The semantic strategy's sentence embeddings: the default encoder's text tower."""
    if settings.chunking.text_strategy != "semantic":
        return None
    from mm_assets.encoders.load import load_encoder

    return load_encoder(settings.default_encoder).embed_texts
