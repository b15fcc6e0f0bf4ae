"""Embed one ingest batch with one encoder: which of its chunks need a vector, which keep the one they
have, the decode jobs, and the shard they are written to.

Content addressing: a chunk that another batch already embedded with this encoder key is never
redone, and rematerializing a batch (after a new chunking, say) carries over the vectors its
previous shard holds for chunks still wanted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mm_assets.config import EncoderConfig
from mm_assets.encoders.embed import AudioJob, ImageJob, StageTimes, embed_audio, embed_images, embed_texts
from mm_assets.encoders.fusion import fused_writer
from mm_assets.encoders.identity import encoder_key, record, shard_folder, write_record
from mm_assets.store.duck import VectorDBError
from mm_assets.store.layout import Layout
from mm_assets.store.served import ServedVectors
from mm_assets.store.shards import ShardStore
from mm_assets.store.tables import (
    CHUNKS,
    EMBEDDINGS,
    ITEM_ROLE,
    RAW_FILES,
    embedding_table_name,
    embeddings_schema,
    upgrade,
)

if TYPE_CHECKING:  # the encoder is passed in; importing it here would pull torch into the definitions
    from mm_assets.encoders.base import Encoder

# Audio windows decoded per job: about two minutes of a long recording at a time.
AUDIO_WINDOWS_PER_JOB = 16
UNIT_NORM_TOLERANCE = 1e-3


@dataclass
class BatchPlan:
    """What embedding a batch with one encoder has to do."""

    shard: str  # where the batch's vectors go
    chunks: list[dict]  # the batch's chunks of the modalities this encoder embeds
    done: set[str]  # chunk ids other batches already embedded with this encoder key
    carried: pa.Table | None  # vectors of this batch's previous shard that are still wanted
    todo: list[dict]  # chunks to embed now
    paths: dict[str, str]  # file id -> path, for the files of the batch


@dataclass
class BatchResult:
    record: dict  # the encoder record (identity + model), as written beside the shards
    written: pa.Table  # the shard as written
    stats: dict[str, StageTimes] = field(default_factory=dict)  # per modality

    @property
    def failures(self) -> list[dict]:
        return [{"chunk_id": cid, "reason": reason} for s in self.stats.values() for cid, reason in s.failures]


def embeds(encoder: EncoderConfig, chunk: dict) -> bool:
    """Whether the encoder makes a vector for the chunk: a fused encoder its items, any other the
    chunks of its modalities but items."""
    if encoder.fuse:
        return chunk["role"] == ITEM_ROLE
    return chunk["modality"] in encoder.modalities and chunk["role"] != ITEM_ROLE


def plan_batch(layout: Layout, batch: str, encoder: EncoderConfig) -> BatchPlan:
    store, key = layout.store, encoder_key(encoder)
    chunks = [
        c for c in upgrade(store.read_table(store.shard(CHUNKS, batch)), CHUNKS).to_pylist() if embeds(encoder, c)
    ]
    raw_files = upgrade(store.read_table(store.shard(RAW_FILES, batch), ["file_id", "path", "status"]), RAW_FILES)
    paths = {r["file_id"]: r["path"] for r in raw_files.to_pylist() if r["status"] == "ok"}
    shard = store.shard(EMBEDDINGS, batch, key)
    done = embedded_elsewhere(layout, key, shard, {c["chunk_id"] for c in chunks})
    todo = list({c["chunk_id"]: c for c in chunks if c["chunk_id"] not in done}.values())
    carried = _vectors_to_keep(store, shard, {c["chunk_id"] for c in todo})
    kept = set(carried.column("chunk_id").to_pylist()) if carried is not None else set()
    return BatchPlan(shard, chunks, done, carried, [c for c in todo if c["chunk_id"] not in kept], paths)


def embedded_elsewhere(layout: Layout, key: str, shard: str, wanted: set[str]) -> set[str]:
    """Which of ``wanted`` other shards of the encoder key already hold a vector for: looked up in the
    served generation (rows dead or alive, by id), plus the few shards written since it; every shard
    is read only when nothing is served yet (or the encoder is new to it)."""
    folder = shard_folder(key)
    try:
        with ServedVectors(layout.db_path) as served:
            found = served.stored_ids(embedding_table_name(key), wanted)
            applied = served.generation().inputs
    except VectorDBError:
        return store_ids(layout.store, folder, shard, wanted)
    if found is None:  # the encoder is new to the served generation
        return store_ids(layout.store, folder, shard, wanted)
    unapplied = [k for k in layout.store.list(folder) if k not in applied and k != shard]
    return found | store_ids(layout.store, folder, shard, wanted, unapplied)


def store_ids(store: ShardStore, folder: str, shard: str, wanted: set[str], keys: list[str] | None = None) -> set[str]:
    """``wanted`` ids found in the folder's shards (or in ``keys``), other than ``shard``."""
    found: set[str] = set()
    for key in store.list(folder) if keys is None else keys:
        if key != shard:
            found.update(i for i in store.read_table(key, ["chunk_id"]).column("chunk_id").to_pylist() if i in wanted)
    return found


def embed_batch(
    store: ShardStore,
    plan: BatchPlan,
    encoder: Encoder,
    *,
    max_pixels: int,
    workers: int,
    progress: Callable[[int], None],
) -> BatchResult:
    """Embed the plan's chunks and write the batch's shard (carried-over vectors first); the encoder
    record is written beside the shards before any vector."""
    info = record(encoder.config, encoder.metadata())
    write_record(store, encoder_key(encoder.config), info)
    schema = embeddings_schema(int(info["embedding_dim"]))  # the model's, twice it for late fusion
    result = BatchResult(info, pa.table({}))
    todo = plan.todo
    with store.writer(plan.shard, schema) as write:
        if plan.carried is not None and plan.carried.num_rows:
            write(plan.carried.cast(schema))

        def write_vectors(ids: list[str], vectors: np.ndarray) -> None:
            write(pa.table({"chunk_id": ids, "embedding": _fixed_size(vectors)}, schema=schema))

        if encoder.config.fuse:  # items: each image vector joined by its caption's, as it is written
            write_vectors = fused_writer(encoder, {c["chunk_id"]: c["text"] for c in todo}, write_vectors)

        image_jobs = _image_jobs([c for c in todo if c["modality"] == "image"], plan.paths)
        audio_jobs = _audio_jobs([c for c in todo if c["modality"] == "audio"], plan.paths)
        texts = [(c["chunk_id"], c["text"]) for c in todo if c["modality"] == "text" and not encoder.config.fuse]
        if image_jobs:
            result.stats["image"] = embed_images(
                encoder, image_jobs, write_vectors, max_pixels=max_pixels, workers=workers, progress=progress
            )
        if audio_jobs:
            result.stats["audio"] = embed_audio(encoder, audio_jobs, write_vectors, workers=workers, progress=progress)
        result.stats["text"] = embed_texts(encoder, texts, write_vectors, progress=progress)
    result.written = store.read_table(plan.shard)
    return result


def write_known_vectors(store: ShardStore, plan: BatchPlan, info: dict) -> BatchResult:
    """The shard of a batch with nothing to embed (its vectors carried over, or none), written
    without loading the model; ``info``: the encoder record already beside the shards."""
    schema = embeddings_schema(int(info["embedding_dim"]))
    store.write_table(plan.shard, plan.carried.cast(schema) if plan.carried is not None else schema.empty_table())
    return BatchResult(info, store.read_table(plan.shard))


def check_vectors(table: pa.Table, dim: int) -> tuple[bool, dict]:
    """Right dimension, finite, unit norm: (passed, figures)."""
    column = table.column("embedding")
    width = column.type.list_size
    vectors = np.asarray(column.combine_chunks().flatten(), dtype=np.float32).reshape(-1, width)
    norms = np.linalg.norm(vectors, axis=1) if len(vectors) else np.ones(0)
    finite = bool(np.isfinite(vectors).all())
    worst = float(np.abs(norms - 1).max()) if len(norms) else 0.0
    passed = width == dim and finite and worst <= UNIT_NORM_TOLERANCE
    return passed, {
        "dim": width,
        "expected_dim": dim,
        "all_finite": finite,
        "max_norm_error": worst,
        "vectors": len(vectors),
    }


def check_coverage(chunks: list[dict], embedded: set[str]) -> tuple[bool, dict]:
    """Every chunk of a covered modality has a vector: (passed, figures)."""
    missing = sorted({c["chunk_id"] for c in chunks} - embedded)
    return not missing, {"chunks": len(chunks), "missing": len(missing), "missing_ids": missing[:20]}


def _vectors_to_keep(store: ShardStore, shard: str, wanted: set[str]) -> pa.Table | None:
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


def _audio_jobs(chunks: list[dict], paths: dict[str, str]) -> list[AudioJob]:
    jobs = []
    for fid, cs in _by_file(chunks).items():
        cs = sorted(cs, key=lambda c: c["t_start"])
        for i in range(0, len(cs), AUDIO_WINDOWS_PER_JOB):
            group = cs[i : i + AUDIO_WINDOWS_PER_JOB]
            spans = tuple((c["t_start"], c["t_end"]) for c in group)
            jobs.append(AudioJob(fid, paths[fid], tuple(c["chunk_id"] for c in group), spans, verify=i == 0))
    return jobs
