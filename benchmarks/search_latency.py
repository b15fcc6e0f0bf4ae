"""Benchmark: search latency at N vectors of dim 512 (ViT-B/32 width), model already loaded.

Exact search (NumPy over the memory-mapped serving matrix) against DuckDB's per-row
array_cosine_distance scan in the same run; optionally HNSW (build time, latency, recall@10
against exact). Reports p50/p99 per query (query embedding included) and the size on disk.

    PYTHONPATH=. python benchmarks/search_latency.py --vectors 100000 [--hnsw]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa

from benchmarks.scratch import scratch_dir

DIM = 512
QUERIES = [f"query number {i} about a dog on a beach" for i in range(60)]


def clustered_vectors(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors clustered like real embeddings, n/100 clusters (uniform random 512-d vectors are a
    worst case no index is built for)."""
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(max(1, n // 100), DIM)).astype(np.float32)
    vectors = centroids[rng.integers(0, len(centroids), n)] + 0.6 * rng.normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def write_synthetic_shards(
    layout, encoder_key: str, record: dict, n: int, vectors: np.ndarray | None = None, batch: str = "b0", first: int = 0
) -> None:
    """One batch of n text chunks over n/10 files (ids numbered from ``first``; 10 chunks a file), with
    ``vectors`` or clustered unit vectors: what vector_tables reads."""
    from mm_assets.encoders.identity import write_record
    from mm_assets.store.tables import CHUNKS_SCHEMA, RAW_FILES_SCHEMA

    store = layout.store
    n_files = max(1, n // 10)
    files = [
        {
            "path": f"/data/doc_{i}.txt",
            "file_id": f"{i:032x}",
            "kind": "text",
            "status": "ok",
            "size": 1,
            "batch": batch,
            "ingested_at": 0.0,
        }
        for i in range(first // 10, first // 10 + n_files)
    ]
    store.write_table(store.shard("raw_files", batch), pa.Table.from_pylist(files, schema=RAW_FILES_SCHEMA))
    chunk_ids = [f"{i:032x}" for i in range(first, first + n)]
    chunks = pa.table(
        {
            "chunk_id": chunk_ids,
            "file_id": [f"{first // 10 + i % n_files:032x}" for i in range(n)],
            "modality": ["text"] * n,
            "position": pa.array(range(n), pa.int32()),
            "text": [f"chunk {i}" for i in range(first, first + n)],
        }
    )
    chunks = pa.Table.from_arrays(
        [chunks.column(f.name) if f.name in chunks.column_names else pa.nulls(n, f.type) for f in CHUNKS_SCHEMA],
        schema=CHUNKS_SCHEMA,
    )
    store.write_table(store.shard("chunks", batch), chunks)
    vectors = clustered_vectors(n) if vectors is None else vectors
    flat = pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(vectors, np.float32).ravel()), DIM)
    store.write_table(
        store.shard("embeddings", batch, encoder_key), pa.table({"chunk_id": chunk_ids, "embedding": flat})
    )
    write_record(store, encoder_key, record)


def percentiles(fn, queries) -> tuple[float, float, list]:
    fn(queries[0])  # warm-up: model, page cache
    times, results = [], []
    for q in queries:
        start = time.perf_counter()
        results.append(fn(q))
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99)), results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--hnsw", action="store_true", help="also build and time an HNSW index (slow on 2 cores)")
    args = parser.parse_args()

    from mm_assets.config import EncoderConfig, Settings
    from mm_assets.encoders.clip import ClipEncoder
    from mm_assets.encoders.identity import encoder_key, record
    from mm_assets.encoders.load import recorded_encoder
    from mm_assets.search.query import Searcher, search
    from mm_assets.store.catalog import list_encoder_tables
    from mm_assets.store.matrices import matrix_path
    from mm_assets.store.segments import ServingSpec, open_read_only, read_generation
    from mm_assets.store.vector_db import update_vector_db
    from mm_assets_tests.tiny_models import build_vit_b32_clip

    work = scratch_dir("mm-search-")
    model = build_vit_b32_clip(work / "vit-b32")
    config = EncoderConfig("clip", model=str(model))  # default precision, as users get it
    settings = Settings(home=work / "home", encoders=(config,))
    layout = settings.layout
    t0 = time.perf_counter()
    key, info = encoder_key(config), record(config, ClipEncoder(config).metadata())
    write_synthetic_shards(layout, key, info, args.vectors)
    exact_spec, hnsw_spec = (ServingSpec({"clip": key}, key, hnsw) for hnsw in (False, True))
    report = update_vector_db(layout, {key: info}, exact_spec, log=lambda _: None)
    print(
        f"{args.vectors:,} vectors x {DIM}: shards {time.perf_counter() - t0 - report.seconds:.1f}s, "
        f"vector_tables build {report.seconds:.1f}s"
    )
    size = sum(p.stat().st_size for p in layout.home.rglob("*") if p.is_file() and "shards" not in p.parts)
    print(f"serving size on disk (DuckDB segment + matrix): {size / 1e6:.0f} MB")

    searcher = Searcher(settings.db_path)  # a long-lived process: connection, model and matrix kept

    def run(q, **kw):
        return searcher.search(text=q, k=10, default_key=key, **kw)

    con = open_read_only(settings.db_path)
    (encoder_table,) = list_encoder_tables(con)
    table, encoder = encoder_table.table_name, recorded_encoder(encoder_table)

    def duckdb_scan(q):
        vec = encoder.embed_texts([q])[0].tolist()
        return con.execute(
            f"SELECT chunk_id FROM {table} ORDER BY array_cosine_distance(embedding, "
            f"$q::FLOAT[{DIM}]), chunk_id LIMIT 10",
            {"q": vec},
        ).fetchall()

    base50, base99, _ = percentiles(duckdb_scan, QUERIES)
    p50, p99, exact = percentiles(lambda q: run(q), QUERIES)
    one50, _, _ = percentiles(lambda q: search(settings.db_path, text=q, k=10, default_key=key), QUERIES)
    con.close()
    print(f"DuckDB array_cosine_distance scan (baseline): p50 {base50:.1f} ms, p99 {base99:.1f} ms")
    print(f"exact search (mm_assets Searcher): p50 {p50:.1f} ms, p99 {p99:.1f} ms  ({base50 / p50:.1f}x faster at p50)")
    print(f"  one-shot search() (opens the database each time, as the CLI does): p50 {one50:.1f} ms")
    embed50, _, _ = percentiles(lambda q: encoder.embed_texts([q]), QUERIES)
    print(f"  of which query embedding: p50 {embed50:.1f} ms")

    if args.hnsw:
        start = time.perf_counter()
        update_vector_db(layout, {key: info}, hnsw_spec, log=lambda _: None)
        print(
            f"HNSW build (whole vector_tables rebuild, vss defaults M 16, ef_construction 128): "
            f"{time.perf_counter() - start:.0f}s"
        )
        size = sum(p.stat().st_size for p in layout.home.rglob("*") if p.is_file() and "shards" not in p.parts)
        print(f"serving size with the index: {size / 1e6:.0f} MB")
        # Two kinds of query: the random model's text embeddings (directions unrelated to the data: every
        # vector is about equally far, the worst case for any ANN index) and queries near stored vectors
        # (as real queries are: they have true near neighbours).
        (segment,) = read_generation(settings.db_path).segments
        matrix = np.load(matrix_path(settings.db_path, segment.name, encoder_table.table_name))
        rng = np.random.default_rng(1)
        near = matrix[rng.choice(len(matrix), len(QUERIES), replace=False)]
        near = near + 0.5 * rng.normal(size=near.shape).astype(np.float32) / np.sqrt(DIM)
        near /= np.linalg.norm(near, axis=1, keepdims=True)
        exact_near = [searcher.search(vector=v, k=10, default_key=key, exact=True) for v in near]

        def recall(approx, truth) -> float:
            return float(
                np.mean([len({h.chunk_id for h in a} & {h.chunk_id for h in e}) / 10 for a, e in zip(approx, truth)])
            )

        for ef in (None, 128, 256, 512):
            hnsw = Searcher(settings.db_path, hnsw_ef_search=ef)
            h50, h99, approx = percentiles(lambda q, s=hnsw: s.search(text=q, k=10, default_key=key), QUERIES)
            n50, n99, approx_near = percentiles(lambda v, s=hnsw: s.search(vector=v, k=10, default_key=key), list(near))
            hnsw.close()
            print(
                f"HNSW ef_search {ef or '64 (default)'}: text queries p50 {h50:.1f} ms, p99 {h99:.1f} ms, "
                f"recall@10 {recall(approx, exact):.3f}; near-data queries p50 {n50:.1f} ms, p99 {n99:.1f} ms, "
                f"recall@10 {recall(approx_near, exact_near):.3f}"
            )


if __name__ == "__main__":
    main()
