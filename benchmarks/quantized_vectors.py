"""Benchmark (issue 16, part 6): compact vectors. For each size, clustered unit vectors of dim 512 (like
search_latency.py's), saved and memory-mapped as the serving matrices are, with their int8 and sign-bit
copies (the product's own functions); 50 queries near stored vectors. Per method: bytes per vector,
recall@10 against exact, p50/p99 latency of the top 10 in one process.

    PYTHONPATH=. python benchmarks/quantized_vectors.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.search_latency import percentiles
from mm_assets.store.quantized import Int8Scan, SignBitScan, int8_codes, sign_bits
from mm_assets.store.scans import RESCORE
from mm_assets.store.served import SegmentVectors

DIM = 512


def serving_segment(n: int, folder: Path) -> SegmentVectors:
    rng = np.random.default_rng(0)
    centroids = rng.standard_normal((max(1, n // 100), DIM), dtype=np.float32)
    matrix = centroids[rng.integers(0, len(centroids), n)]
    matrix += 0.6 * rng.standard_normal((n, DIM), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    int8, scales = int8_codes(matrix)
    for name, array in (("fp32", matrix), ("int8", int8), ("bits", sign_bits(matrix))):
        np.save(folder / f"{name}.npy", array)
    del matrix, int8
    ids = np.asarray([f"{i:032x}" for i in range(n)])
    compact = {
        "int8": Int8Scan(np.load(folder / "int8.npy", mmap_mode="r"), scales),
        "binary": SignBitScan(np.load(folder / "bits.npy", mmap_mode="r")),
    }
    matrix = np.load(folder / "fp32.npy", mmap_mode="c")
    return SegmentVectors("s0", matrix, np.ones(n, np.uint8), ids, np.argsort(ids), np.zeros(n, bool), False, compact)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    print("| vectors | method | bytes/vector | recall@10 vs exact | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            part = serving_segment(n, Path(tmp))
            rng = np.random.default_rng(1)
            queries = np.asarray(part.matrix[np.sort(rng.integers(0, n, args.queries))])
            queries += 0.1 * rng.standard_normal(queries.shape, dtype=np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            methods = [  # name, bytes per vector searched, compact kind, candidates rescored
                ("exact fp32", DIM * 4, None, 0),
                ("int8, top 200 rescored", DIM + 4, "int8", 200),
                ("binary, top 200 rescored", DIM // 8, "binary", 200),
                (f"binary, top {RESCORE} rescored (the default)", DIM // 8, "binary", RESCORE),
            ]
            exact = None
            for name, size, kind, rescore in methods:
                p50, p99, results = percentiles(
                    lambda q, top=part.top, kind=kind, rescore=rescore: top(q, 10, None, kind, rescore), queries
                )
                found = [{cid for cid, _ in r} for r in results]
                exact = exact or found
                recall = np.mean([len(a & b) / 10 for a, b in zip(found, exact)])
                print(f"| {n:,} | {name} | {size:,} | {recall:.3f} | {p50:.1f} | {p99:.1f} |", flush=True)


if __name__ == "__main__":
    main()
