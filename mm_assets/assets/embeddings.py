"""One embedding asset per configured encoder (an asset factory over the config)."""

import dagster as dg

from mm_assets.assets.common import (
    OWNERS,
    Storage,
    ingest_batches,
    markdown_table,
    require_batch,
    table_metadata,
    tags,
)
from mm_assets.config import EncoderConfig
from mm_assets.encoders.batch import check_coverage, check_vectors, embed_batch, plan_batch, write_known_vectors
from mm_assets.encoders.identity import code_version, encoder_key, read_record, table_name
from mm_assets.progress import Progress


def embedding_asset_key(encoder: EncoderConfig) -> dg.AssetKey:
    return dg.AssetKey(["embeddings", encoder.name])


def build_embedding_asset(encoder_config: EncoderConfig, upstream: list, max_image_pixels: int, decode_workers: int):
    key = embedding_asset_key(encoder_config)

    @dg.asset(
        key=key,
        partitions_def=ingest_batches,
        group_name="embedding",
        owners=OWNERS,
        tags=tags("embed"),
        kinds={"pytorch", "parquet"},
        deps=upstream,
        # The fingerprint covers model, revision, dtype and code: changing any marks exactly this asset stale.
        code_version=code_version(encoder_config),
        pool="gpu",
        description=f"{encoder_config.name}: {encoder_config.model} ({encoder_config.dtype}), "
        f"modalities {', '.join(encoder_config.modalities)}",
        metadata={"model": encoder_config.model, "encoder_key": encoder_key(encoder_config)},
        # Per batch, so a backfill shows each batch's result; invalid vectors stop the run before vector_tables.
        check_specs=[
            dg.AssetCheckSpec(
                "vectors_are_valid",
                asset=key,
                description="right dimension, finite, unit norm",
                blocking=True,
                partitions_def=ingest_batches,
            ),
            # Not blocking: a chunk that could not be embedded (a bad file) is listed, and must not keep
            # the batch's other vectors from search.
            dg.AssetCheckSpec(
                "every_chunk_embedded",
                asset=key,
                description="every chunk of a covered modality has a vector for this encoder (warns)",
                partitions_def=ingest_batches,
            ),
        ],
    )
    def embeddings(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
        store = storage.layout.store
        plan = plan_batch(storage.layout, require_batch(context, storage.layout), encoder_config)
        if encoder_config.awaiting_training:
            # Not trained yet: write nothing (so `mm-assets run` fills it in later) and let the check say so.
            context.log.warning(
                f"{encoder_config.name} is not trained yet: materialize fine_tuned/{encoder_config.name}"
            )
            return dg.MaterializeResult(
                metadata={"skipped": "fine-tuned model not trained yet", "chunks_in_batch": len(plan.chunks)},
                check_results=[_check("every_chunk_embedded", *check_coverage(plan.chunks, plan.done))],
            )
        carried = plan.carried.num_rows if plan.carried is not None else 0
        already = len(plan.chunks) - len(plan.todo)  # by other batches, or carried over from this one's last shard
        context.log.info(f"{len(plan.chunks)} chunks, {already} already embedded, {len(plan.todo)} to embed")

        recorded = None if plan.todo else read_record(store, encoder_key(encoder_config))
        if recorded is not None:
            # Nothing to embed (deletions, moves, known content): the shard without loading the model.
            result, dim = write_known_vectors(store, plan, recorded), int(recorded["embedding_dim"])
        else:
            # Imported when the step runs, not when the definitions load (see mm_assets/assets/__init__.py).
            from mm_assets.encoders.load import load_encoder

            encoder = load_encoder(encoder_config, {c["modality"] for c in plan.todo})
            with Progress(len(plan.todo), f"embed {encoder_config.name}", context.log.info, unit="chunk") as progress:
                result = embed_batch(
                    store, plan, encoder, max_pixels=max_image_pixels, workers=decode_workers, progress=progress
                )
            dim = int(result.record["embedding_dim"])
        for f in result.failures:
            context.log.warning(f"could not embed chunk {f['chunk_id']}: {f['reason']}")
        written_ids = set(result.written.column("chunk_id").to_pylist())
        return dg.MaterializeResult(
            metadata={
                **table_metadata(result.written, store.uri(plan.shard)),
                **result.record,
                "table_name": table_name(encoder_config),
                "chunks_in_batch": len(plan.chunks),
                "already_embedded": already,
                "embedded": result.written.num_rows - carried,  # computed by this run
                "carried_over": carried,  # kept from this batch's previous shard
                "model_loaded": recorded is None,
                "failed": len(result.failures),
                "failures": markdown_table(result.failures, ["chunk_id", "reason"]),
                **{k: v for modality, s in result.stats.items() for k, v in s.as_metadata(modality).items()},
            },
            check_results=[
                _check("vectors_are_valid", *check_vectors(result.written, dim)),
                _check("every_chunk_embedded", *check_coverage(plan.chunks, plan.done | written_ids)),
            ],
        )

    return embeddings


def _check(name: str, passed: bool, figures: dict) -> dg.AssetCheckResult:
    # A chunk that could not be embedded (a bad file) is reported, and does not stop the batch's other
    # vectors from being served; invalid vectors do.
    severity = dg.AssetCheckSeverity.WARN if name == "every_chunk_embedded" else dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckResult(check_name=name, passed=passed, metadata=figures, severity=severity)
