"""Benchmark: the duplicates step at 100k and 1M chunks (512-d, clustered like real embeddings).

A served home of N text chunks (10 a file) with planted near-copies in other files (cosines spread
over 0.965-0.995), then, in one run:
1. the first comparison through the shortlist (store/close_pairs.py): wall time, peak memory;
2. the same with every pair compared (what the step did before, EXACT_PRODUCTS raised), up to
   --exact-max vectors; above it, its time is estimated from the cosines the shortlist scan computes
   and the rate every-pair comparison reached on 100k rows in this run;
3. a 10-file batch (100 chunks, some copies of served ones) against everything.
Recall is of the planted pairs and of the pairs the every-pair comparison finds.

    PYTHONPATH=. python benchmarks/duplicates_scale.py [--vectors 100000 1000000] [--exact-max 100000]
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from benchmarks.scratch import scratch_dir
from benchmarks.search_latency import clustered_vectors, write_synthetic_shards

PLANTED = 2000  # near-copies planted in the first comparison
BATCH_FILES = 10
PROFILE = False


def with_copies(vectors: np.ndarray, originals: np.ndarray, rng) -> np.ndarray:
    """Unit vectors at a cosine of about 0.965-0.995 to each original."""
    noise = rng.normal(size=(len(originals), vectors.shape[1])).astype(np.float32)
    noise -= (noise * vectors[originals]).sum(axis=1, keepdims=True) * vectors[originals]  # orthogonal
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    angle = np.arccos(rng.uniform(0.965, 0.995, size=(len(originals), 1))).astype(np.float32)
    return np.cos(angle) * vectors[originals] + np.sin(angle) * noise


def pairs_of(layout) -> set[tuple[str, str]]:
    from mm_assets.duplicates import read_pairs

    table = read_pairs(layout.duplicate_pairs)
    return {
        (a, b) for a, b, link in zip(*(table.column(c).to_pylist() for c in ("a", "b", "link"))) if link == "semantic"
    }


def timed_update(settings) -> tuple[object, float, float]:
    """The duplicates update: its report, wall seconds and peak traced (numpy) memory in GB."""
    from mm_assets.duplicates import update_duplicates
    from mm_assets.store.served import ServedVectors

    tracemalloc.start()
    start = time.perf_counter()
    with ServedVectors(settings.db_path) as served:
        run = update_duplicates(settings, served, log=lambda line: print("   ", line))
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 1e9
    tracemalloc.stop()
    return run, seconds, peak


def every_pair(settings) -> tuple[set, float, int]:
    """The semantic pairs of every live chunk, every pair compared (one cell): the exact answer the
    shortlist is measured against, its seconds and cosines."""
    from mm_assets.store import close_pairs
    from mm_assets.store.catalog import choose_encoder_table
    from mm_assets.store.served import ServedVectors

    start = time.perf_counter()
    with ServedVectors(settings.db_path) as served:
        table = choose_encoder_table(served.tables(), "clip")
        ids, matrix, files = served.live_rows(table, "text")
        rows = close_pairs.Rows(matrix, files, np.argsort(np.argsort(ids)))
        rule = close_pairs.PairRule(settings.duplicates.semantic_cosine, settings.duplicates.links_per_chunk)
        close_pairs.EXACT_PRODUCTS, saved = 2**62, close_pairs.EXACT_PRODUCTS
        try:
            [(q, r, _)], report = close_pairs.close_pairs(rows, np.arange(len(ids)), [rule], print)
        finally:
            close_pairs.EXACT_PRODUCTS = saved
    pairs = {tuple(sorted(pair)) for pair in zip(ids[q], ids[r])}
    return pairs, time.perf_counter() - start, report.products


def recall(found: set, truth: set) -> float:
    return len(found & truth) / max(1, len(truth))


def one_size(n: int, exact_max: int, rate_every_pair: float | None) -> float | None:
    from mm_assets.config import EncoderConfig, Settings
    from mm_assets.encoders.clip import ClipEncoder
    from mm_assets.encoders.identity import encoder_key, write_record
    from mm_assets.encoders.identity import record as encoder_record
    from mm_assets.store.segments import ServingSpec
    from mm_assets.store.vector_db import update_vector_db
    from mm_assets_tests.tiny_models import build_tiny_clip

    rng = np.random.default_rng(1)
    work = scratch_dir("mm-dup-scale-")
    # The vectors are synthetic; the model only names the table (a tiny one, 512-d like ViT-B/32).
    config = EncoderConfig("clip", model=str(build_tiny_clip(work / "tiny", projection_dim=512)))
    settings = Settings(home=work / "home", encoders=(config,))
    layout, key = settings.layout, encoder_key(config)
    record = encoder_record(config, ClipEncoder(config).metadata())
    vectors = clustered_vectors(n)
    originals = rng.choice(n, PLANTED, replace=False)
    # Each copy replaces a chunk of another file (chunk i is in file i % (n/10)).
    copies = (originals + rng.integers(1, n // 10, PLANTED)) % n
    keep = ~np.isin(copies, originals) & (
        np.unique(copies, return_counts=True)[1][np.searchsorted(np.unique(copies), copies)] == 1
    )
    originals, copies = originals[keep], copies[keep]
    vectors[copies] = with_copies(vectors, originals, rng)
    planted = {tuple(sorted((f"{a:032x}", f"{b:032x}"))) for a, b in zip(originals, copies)}
    start = time.perf_counter()
    write_synthetic_shards(layout, key, record, n, vectors)
    spec = ServingSpec({"clip": key}, key, False)
    update_vector_db(layout, {key: record}, spec, log=lambda _: None)
    print(f"\n{n:,} vectors x 512, {len(planted):,} planted copies: home built in {time.perf_counter() - start:.0f} s")

    run, seconds, peak = timed_update(settings)
    shortlisted = pairs_of(layout)
    print(
        f"  first comparison, shortlist: {seconds:.1f} s, numpy peak {peak:.2f} GB, {run.cells:,} cells, "
        f"{run.comparisons:,} cosines ({run.comparisons / n**2:.2%} of all pairs); "
        f"planted recall {recall(shortlisted, planted):.4f}"
    )
    if n <= exact_max:
        exact, exact_seconds, products = every_pair(settings)
        rate_every_pair = products / exact_seconds
        print(
            f"  first comparison, every pair: {exact_seconds:.1f} s, {products:,} cosines; planted recall "
            f"{recall(exact, planted):.4f}; the shortlist's recall of its pairs {recall(shortlisted, exact):.4f} "
            f"({len(exact):,} pairs); speed-up {exact_seconds / seconds:.1f}x"
        )
    elif rate_every_pair:
        print(
            f"  first comparison, every pair: not run; at this run's rate ({rate_every_pair:,.0f} cosines/s) "
            f"its {n**2:,} cosines would take about {n**2 / rate_every_pair / 3600:.1f} h"
        )

    # A batch of 10 files (100 chunks), a third of them copies of served chunks.
    extra = BATCH_FILES * 10
    batch_vectors = clustered_vectors(extra, seed=2)
    sources = rng.choice(n, extra // 3, replace=False)
    batch_vectors[: len(sources)] = with_copies(vectors, sources, rng)
    write_synthetic_shards(layout, key, record, extra, batch_vectors, batch="b1", first=n)
    write_record(layout.store, key, record)
    update_vector_db(layout, {key: record}, spec, log=lambda _: None)
    before = pairs_of(layout)
    if PROFILE:
        import cProfile

        cProfile.runctx("timed_update(settings)", globals(), locals(), sort="cumtime")
    run, seconds, peak = timed_update(settings)
    new_pairs = pairs_of(layout) - before
    print(
        f"  a {BATCH_FILES}-file batch ({extra} chunks): {seconds:.2f} s, numpy peak {peak:.2f} GB, "
        f"{run.comparisons:,} cosines (every pair: {run.cells == 1}); {len(new_pairs)} new pairs "
        f"for {len(sources)} planted copies"
    )
    resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"  peak resident memory of this process so far: {resident:.1f} GB")
    return rate_every_pair


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--exact-max", type=int, default=100_000, help="largest size compared every pair too")
    args = parser.parse_args()
    flags = open("/proc/cpuinfo").read()
    print(f"CPU flags: avx2 {'avx2' in flags}, avx512_bf16 {'avx512_bf16' in flags}")
    rate = None
    for n in sorted(args.vectors):
        rate = one_size(n, args.exact_max, rate)


if __name__ == "__main__":
    main()
