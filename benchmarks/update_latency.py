"""Benchmark: from a 10-file batch to searchable, at N stored vectors (dim 512, synthetic shards), against
a full rebuild of the same shards measured in the same run; then 50 churn batches (10 files added, 10
deleted, 10 edited each), with the serving folder's size against the live vectors' and compaction when
it pays.

"Searchable" = the update published and a fresh Searcher answers a query that finds a new chunk (no
model: the query is a stored vector). With --hnsw the store is built with HNSW indexes.

    PYTHONPATH=. python benchmarks/update_latency.py --vectors 100000 [--hnsw] [--churn 50]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks.scratch import scratch_dir
from benchmarks.search_latency import DIM, write_synthetic_shards

CHUNKS_PER_FILE = 10


def write_batch(layout, key: str, batch: str, added: list[int], deleted: list[int], edited: list[int], rng) -> str:
    """The shards of one batch, as the ingest, chunking and embedding assets would write them: new and
    edited files (10 chunks each, fresh vectors) and tombstones. Returns a new chunk id."""
    from mm_assets.store.tables import CHUNKS_SCHEMA, RAW_FILES_SCHEMA

    store, now = layout.store, time.time()
    rows, chunks = [], []
    for i in added + edited:
        file_id = f"{batch}-{i}"
        rows.append(
            {
                "path": f"/data/doc_{i}.txt",
                "file_id": file_id,
                "kind": "text",
                "status": "ok",
                "size": 1,
                "batch": batch,
                "ingested_at": now,
                "change": "edited" if i in edited else "added",
            }
        )
        for j in range(CHUNKS_PER_FILE):
            chunks.append(
                {
                    "chunk_id": f"{file_id}-{j}",
                    "file_id": file_id,
                    "modality": "text",
                    "role": "window",
                    "position": j,
                    "text": f"chunk {j} of {file_id}",
                    "batch": batch,
                }
            )
    rows += [
        {"path": f"/data/doc_{i}.txt", "status": "deleted", "batch": batch, "ingested_at": now, "change": "deleted"}
        for i in deleted
    ]
    store.write_table(store.shard("raw_files", batch), pa.Table.from_pylist(rows, schema=RAW_FILES_SCHEMA))
    store.write_table(store.shard("chunks", batch), pa.Table.from_pylist(chunks, schema=CHUNKS_SCHEMA))
    v = rng.normal(size=(len(chunks), DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    flat = pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), DIM)
    ids = [c["chunk_id"] for c in chunks]
    store.write_table(store.shard("embeddings", batch, key), pa.table({"chunk_id": ids, "embedding": flat}))
    return ids[0], v[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--hnsw", action="store_true")
    parser.add_argument("--churn", type=int, default=50, help="churn batches after the timed one")
    args = parser.parse_args()

    from mm_assets.config import EncoderConfig, Settings
    from mm_assets.encoders.identity import encoder_key
    from mm_assets.search.query import Searcher
    from mm_assets.store.segments import ServingSpec, read_generation
    from mm_assets.store.vector_db import compact, segments_to_merge, update_vector_db

    work = scratch_dir("mm-update-")
    config = EncoderConfig("clip", model=str(work / "unused"))
    settings = Settings(home=work / "home", encoders=(config,))
    layout, key = settings.layout, encoder_key(config)
    info = {
        "encoder": "clip",
        "fingerprint": "f",
        "model_id": "synthetic",
        "revision": "r",
        "embedding_dim": DIM,
        "dtype": "float32",
        "modalities": ["text"],
    }
    write_synthetic_shards(layout, key, info, args.vectors)
    spec = ServingSpec({"clip": key}, key, args.hnsw)
    quiet = lambda _: None  # noqa: E731
    rng = np.random.default_rng(0)
    n_files = args.vectors // 10  # write_synthetic_shards: doc_0 .. doc_{n/10 - 1}, 10 chunks each

    def searchable(chunk_id: str, vector: np.ndarray) -> float:
        start = time.perf_counter()
        with Searcher(settings.db_path) as searcher:
            hits = searcher.search(vector=vector, k=1, default_key=key)
        assert hits[0].chunk_id == chunk_id, "the new chunk is found"
        return time.perf_counter() - start

    rebuild = update_vector_db(layout, {key: info}, spec, log=quiet)
    print(
        f"{args.vectors:,} vectors x {DIM}, hnsw={args.hnsw}: full rebuild {rebuild.seconds:.1f}s "
        f"(HNSW {rebuild.hnsw_seconds:.1f}s)"
    )

    new_ids = list(range(n_files, n_files + 10))
    chunk_id, vector = write_batch(layout, key, "b1", new_ids, [], [], rng)
    update = update_vector_db(layout, {key: info}, spec, log=quiet)
    query = searchable(chunk_id, vector)
    print(
        f"10-file batch: update {update.seconds:.2f}s ({update.mode}) + first query of a fresh reader "
        f"{query:.2f}s = {update.seconds + query:.2f}s to searchable"
    )

    # What the previous design paid for the same batch: a full rebuild of every shard (into another home).
    full = update_vector_db(layout_over(layout, work / "rebuild"), {key: info}, spec, log=quiet)
    print(
        f"full rebuild with the batch: {full.seconds:.1f}s -> {full.seconds / (update.seconds + query):.0f}x "
        "the update's time to searchable"
    )

    next_file = n_files + 10
    live = list(range(n_files + 10))
    compactions = []
    for b in range(args.churn):
        added = list(range(next_file, next_file + 10))
        next_file += 10
        picks = rng.choice(len(live), 20, replace=False)
        deleted, edited = [live[i] for i in picks[:10]], [live[i] for i in picks[10:]]
        live = [f for f in live if f not in set(deleted)] + added
        write_batch(layout, key, f"c{b:03d}", added, deleted, edited, rng)
        update_vector_db(layout, {key: info}, spec, log=quiet)
        generation = read_generation(settings.db_path)
        if segments_to_merge(generation):
            report = compact(layout, spec, {key: info}, log=quiet)
            compactions.append(report.seconds)
    generation = read_generation(settings.db_path)
    if args.hnsw:
        # Recall@10 of the indexed search against exact, after the churn (deleted rows filtered out,
        # small segments searched exactly), for queries near stored vectors.
        with Searcher(settings.db_path) as searcher:
            parts = searcher.served.segments(searcher.served.tables()[0])
            base = parts[0].matrix
            picks = rng.choice(len(base), 50, replace=False)
            queries = base[picks] + 0.5 * rng.normal(size=(50, DIM)).astype(np.float32) / np.sqrt(DIM)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            recall = np.mean(
                [
                    len(
                        {h.chunk_id for h in searcher.search(vector=q, k=10, default_key=key)}
                        & {h.chunk_id for h in searcher.search(vector=q, k=10, default_key=key, exact=True)}
                    )
                    / 10
                    for q in queries
                ]
            )
        print(
            f"HNSW recall@10 against exact after the churn: {recall:.3f} (segments indexed: "
            f"{sum(bool(s.hnsw) for s in generation.segments)} of {len(generation.segments)})"
        )
    size = sum(p.stat().st_size for p in settings.db_path.rglob("*") if p.is_file())
    live_vectors = generation.live[f"emb_{key}"]
    # Live data: the vectors twice (DuckDB table for HNSW/eval, .npy for exact search) plus ids and chunks,
    # compared with a fresh rebuild of the same live rows.
    fresh = update_vector_db(layout_over(layout, work / "fresh"), {key: info}, spec, log=quiet)
    fresh_size = sum(p.stat().st_size for p in (work / "fresh" / "vectors").rglob("*") if p.is_file())
    print(
        f"after {args.churn} churn batches: {len(generation.segments)} segment(s), {generation.dead_rows} dead rows, "
        f"{live_vectors:,} live vectors; serving folder {size / 1e6:.0f} MB vs {fresh_size / 1e6:.0f} MB "
        f"for a fresh build of the same live rows ({size / fresh_size:.2f}x); {len(compactions)} compaction(s) "
        f"of {np.mean(compactions) if compactions else 0:.1f}s each; fresh build {fresh.seconds:.1f}s"
    )


def layout_over(layout, home: Path):
    """A layout serving from another home over the same shard store."""
    from mm_assets.store.layout import Layout

    return Layout(home, store_url=str(layout.home))


if __name__ == "__main__":
    main()
