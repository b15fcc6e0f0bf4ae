"""One embedding asset per configured encoder (an asset factory over the config)."""

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mm_assets.assets.common import Storage, ingest_batches, markdown_table, table_metadata
from mm_assets.config import EncoderConfig
from mm_assets.encoders.embed import AudioJob, ImageJob
from mm_assets.progress import Progress
from mm_assets.store.vector_db import embedding_table

UNIT_NORM_TOLERANCE = 1e-3


def embeddings_schema(dim: int) -> pa.Schema:
    return pa.schema([("chunk_id", pa.string()), ("embedding", pa.list_(pa.float32(), dim))])


def embedding_asset_key(encoder: EncoderConfig) -> dg.AssetKey:
    return dg.AssetKey(["embeddings", encoder.name])


def build_embedding_asset(encoder_config: EncoderConfig, upstream: list, max_image_pixels: int, decode_workers: int):
    key = embedding_asset_key(encoder_config)

    @dg.asset(
        key=key,
        partitions_def=ingest_batches,
        group_name="embedding",
        kinds={"pytorch", "parquet"},
        deps=upstream,
        # The fingerprint covers model, revision, dtype and code: changing any marks exactly this asset stale.
        code_version=encoder_config.fingerprint,
        pool="gpu",
        description=f"{encoder_config.name}: {encoder_config.model} ({encoder_config.dtype}), "
        f"modalities {', '.join(encoder_config.modalities)}",
        metadata={"model": encoder_config.model, "encoder_key": encoder_config.key},
        check_specs=[
            dg.AssetCheckSpec("vectors_are_valid", asset=key, description="right dimension, finite, unit norm"),
            dg.AssetCheckSpec(
                "every_chunk_embedded",
                asset=key,
                description="every chunk of a covered modality has a vector for this encoder",
            ),
        ],
    )
    def embeddings(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
        store, batch, enc_key = storage.layout.store, context.partition_key, encoder_config.key
        chunks = [
            c
            for c in store.read_table(store.shard("chunks", batch)).to_pylist()
            if c["modality"] in encoder_config.modalities
        ]
        paths = {
            r["file_id"]: r["path"]
            for r in store.read_table(store.shard("raw_files", batch)).to_pylist()
            if r["status"] == "ok"
        }
        out = store.shard("embeddings", batch, enc_key)
        # Content addressing: chunks another batch already embedded with this encoder are never redone.
        done = store.existing_ids(store.shard_dir("embeddings", enc_key), "chunk_id", exclude=out)
        todo = list({c["chunk_id"]: c for c in chunks if c["chunk_id"] not in done}.values())
        # Rematerializing this batch (new chunking, say): vectors its last shard holds for chunks that
        # are still wanted are carried over, not recomputed.
        carried = _vectors_to_keep(store, out, {c["chunk_id"] for c in todo})
        kept = set(carried.column("chunk_id").to_pylist()) if carried is not None else set()
        todo = [c for c in todo if c["chunk_id"] not in kept]
        if encoder_config.awaiting_training:
            # Not trained yet: write nothing (so `mm-assets run` fills it in later) and let the check say so.
            context.log.warning(
                f"{encoder_config.name} is not trained yet: materialize fine_tuned/{encoder_config.name}"
            )
            return dg.MaterializeResult(
                metadata={"skipped": "fine-tuned model not trained yet", "chunks_in_batch": len(chunks)},
                check_results=[_coverage_check(chunks, done)],
            )
        context.log.info(f"{len(chunks)} chunks, {len(chunks) - len(todo)} already embedded, {len(todo)} to embed")

        # Imported when the step runs, not when the definitions load (see mm_assets/assets/__init__.py).
        from mm_assets.encoders.embed import embed_audio, embed_images, embed_texts
        from mm_assets.encoders.load import load_encoder

        encoder = load_encoder(encoder_config)
        info = encoder.metadata()
        store.write_json(store.encoder_record(enc_key), info)
        image_jobs = _image_jobs([c for c in todo if c["modality"] == "image"], paths)
        audio_jobs = _audio_jobs([c for c in todo if c["modality"] == "audio"], paths)
        texts = [(c["chunk_id"], c["text"]) for c in todo if c["modality"] == "text"]
        with (
            Progress(len(todo), f"embed {encoder_config.name}", context.log.info) as progress,
            store.writer(out, embeddings_schema(encoder.dim)) as write,
        ):
            if carried is not None and carried.num_rows:
                write(carried.cast(embeddings_schema(encoder.dim)))

            def write_batch(ids: list[str], vectors: np.ndarray) -> None:
                write(
                    pa.table(
                        {"chunk_id": ids, "embedding": _fixed_size(vectors)}, schema=embeddings_schema(encoder.dim)
                    )
                )

            stats = {}
            if image_jobs:
                stats["image"] = embed_images(
                    encoder,
                    image_jobs,
                    write_batch,
                    max_pixels=max_image_pixels,
                    workers=decode_workers,
                    progress=progress,
                )
            if audio_jobs:
                stats["audio"] = embed_audio(
                    encoder, audio_jobs, write_batch, workers=decode_workers, progress=progress
                )
            stats["text"] = embed_texts(encoder, texts, write_batch, progress=progress)

        written = store.read_table(out)
        failures = [{"chunk_id": cid, "reason": reason} for s in stats.values() for cid, reason in s.failures]
        for f in failures:
            context.log.warning(f"could not embed chunk {f['chunk_id']}: {f['reason']}")
        return dg.MaterializeResult(
            metadata={
                **table_metadata(written, store.uri(out)),
                **info,
                "table_name": embedding_table(enc_key),
                "chunks_in_batch": len(chunks),
                "already_embedded": len(chunks) - len(todo),
                "embedded": written.num_rows - len(kept),  # computed by this run
                "carried_over": len(kept),  # kept from this batch's previous shard
                "failed": len(failures),
                "failures": markdown_table(failures, ["chunk_id", "reason"]),
                **{k: v for modality, s in stats.items() for k, v in s.as_metadata(modality).items()},
            },
            check_results=[
                _validity_check(written, encoder.dim),
                _coverage_check(chunks, done | set(written.column("chunk_id").to_pylist())),
            ],
        )

    return embeddings


def _vectors_to_keep(store, shard: str, wanted: set[str]) -> pa.Table | None:
    if not wanted or not store.exists(shard):
        return None
    previous = store.read_table(shard)
    return previous.filter(pc.is_in(previous.column("chunk_id"), pa.array(sorted(wanted))))


def _fixed_size(vectors: np.ndarray) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def _by_file(chunks: list[dict]) -> dict[str, list[dict]]:
    by_file: dict[str, list[dict]] = {}
    for c in chunks:
        by_file.setdefault(c["file_id"], []).append(c)
    return by_file


def _image_jobs(chunks: list[dict], paths: dict[str, str]) -> list[ImageJob]:
    """Regions of image files, one job per file; images cut out of a file (figures, frames) are
    stored in their chunk, one job each."""
    whole = [
        ImageJob(fid, paths[fid], tuple(c["chunk_id"] for c in cs), tuple(tuple(c["bbox"]) for c in cs))
        for fid, cs in _by_file([c for c in chunks if c["media"] is None]).items()
    ]
    cut_out = [
        ImageJob(c["file_id"], paths[c["file_id"]], (c["chunk_id"],), ((0.0, 0.0, 1.0, 1.0),), c["media"])
        for c in chunks
        if c["media"] is not None
    ]
    return whole + cut_out


# Audio windows decoded per job: about two minutes of a long recording at a time.
AUDIO_WINDOWS_PER_JOB = 16


def _audio_jobs(chunks: list[dict], paths: dict[str, str]) -> list[AudioJob]:
    jobs = []
    for fid, cs in _by_file(chunks).items():
        cs = sorted(cs, key=lambda c: c["t_start"])
        for i in range(0, len(cs), AUDIO_WINDOWS_PER_JOB):
            group = cs[i : i + AUDIO_WINDOWS_PER_JOB]
            spans = tuple((c["t_start"], c["t_end"]) for c in group)
            jobs.append(AudioJob(fid, paths[fid], tuple(c["chunk_id"] for c in group), spans, verify=i == 0))
    return jobs


def _validity_check(table: pa.Table, dim: int) -> dg.AssetCheckResult:
    column = table.column("embedding")
    width = column.type.list_size
    vectors = np.asarray(column.combine_chunks().flatten(), dtype=np.float32).reshape(-1, width)
    norms = np.linalg.norm(vectors, axis=1) if len(vectors) else np.ones(0)
    finite = bool(np.isfinite(vectors).all())
    worst = float(np.abs(norms - 1).max()) if len(norms) else 0.0
    return dg.AssetCheckResult(
        check_name="vectors_are_valid",
        passed=width == dim and finite and worst <= UNIT_NORM_TOLERANCE,
        metadata={
            "dim": width,
            "expected_dim": dim,
            "all_finite": finite,
            "max_norm_error": worst,
            "vectors": len(vectors),
        },
    )


def _coverage_check(chunks: list[dict], embedded: set[str]) -> dg.AssetCheckResult:
    missing = sorted({c["chunk_id"] for c in chunks} - embedded)
    return dg.AssetCheckResult(
        check_name="every_chunk_embedded",
        passed=not missing,
        metadata={"chunks": len(chunks), "missing": len(missing), "missing_ids": missing[:20]},
    )
