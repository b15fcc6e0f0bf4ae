"""Benchmark: the duplicates step at 100k and 1M chunks (512-d, clustered like real embeddings).

A served home of N text chunks (10 a file) with planted near-copies in other files (cosines spread
over 0.965-0.995), then, in one run:
1. the first comparison through the shortlist (store/close_pairs.py): wall time, peak memory;
2. the same with every pair compared (what the step did before), up to --exact-max vectors; above
   it, every pair of a sample (the planted chunks and as many random ones), its recall measured on
   them and the whole comparison's time estimated from its rate;
3. a 10-file batch (100 chunks, some copies of served ones) against everything.
Recall is of the planted pairs and of the pairs the every-pair comparison finds.

    PYTHONPATH=. python benchmarks/duplicates_scale.py [--vectors 100000 1000000] [--exact-max 100000] [--profile]
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time

import numpy as np

from benchmarks.scratch import scratch_dir
from benchmarks.search_latency import clustered_vectors, write_synthetic_shards

PLANTED = 2000  # near-copies planted in the first comparison
BATCH_FILES = 10


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


def _resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed_update(settings) -> tuple[object, float, float]:
    """The duplicates update: its report, wall seconds, and the most resident memory it added (GB,
    sampled every 10 ms: numpy, Arrow and DuckDB alike)."""
    from mm_assets.duplicates import update_duplicates
    from mm_assets.store.served import ServedVectors

    base, peak, done = _resident(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], _resident() - base)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    with ServedVectors(settings.db_path) as served:
        run = update_duplicates(settings, served, log=lambda line: print("   ", line))
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return run, seconds, peak[0] / 1e9


def every_pair(settings, sample: set[str] | None = None) -> tuple[set, float, int]:
    """The semantic pairs of every live chunk (or of those in ``sample``), every pair compared (one
    cell): the exact answer the shortlist is measured against, its seconds and cosines."""
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
            queries = np.arange(len(ids)) if sample is None else np.flatnonzero(np.isin(ids, list(sample)))
            [(q, r, _)], report = close_pairs.close_pairs(rows, queries, [rule], print)
        finally:
            close_pairs.EXACT_PRODUCTS = saved
    pairs = {tuple(sorted(pair)) for pair in zip(ids[q], ids[r])}
    return pairs, time.perf_counter() - start, report.products


def recall(found: set, truth: set) -> float:
    return len(found & truth) / max(1, len(truth))


def one_size(n: int, exact_max: int, profile: bool) -> None:
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
        f"  first comparison, shortlist: {seconds:.1f} s, memory peak {peak:.2f} GB, {run.cells:,} cells, "
        f"{run.comparisons:,} cosines ({run.comparisons / n**2:.2%} of all pairs); "
        f"planted recall {recall(shortlisted, planted):.4f}"
    )
    if n <= exact_max:
        exact, exact_seconds, products = every_pair(settings)
        print(
            f"  first comparison, every pair: {exact_seconds:.1f} s, {products:,} cosines; planted recall "
            f"{recall(exact, planted):.4f}; the shortlist's recall of its pairs {recall(shortlisted, exact):.4f} "
            f"({len(exact):,} pairs); speed-up {exact_seconds / seconds:.1f}x"
        )
    else:
        # Every pair of a sample: the planted chunks and as many others, drawn at random.
        sample = {f"{i:032x}" for i in (*originals, *copies, *rng.choice(n, 2 * len(originals), replace=False))}
        exact, exact_seconds, products = every_pair(settings, sample)
        found = {pair for pair in shortlisted if pair[0] in sample or pair[1] in sample}
        rate = products / exact_seconds
        print(
            f"  every pair of a sample of {len(sample):,} chunks: {len(exact):,} pairs, the shortlist's recall of "
            f"them {recall(found, exact):.4f}; at its rate ({rate:,.0f} cosines/s) comparing every pair of "
            f"{n:,} would take about {n**2 / rate / 3600:.1f} h"
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
    if profile:  # where a batch's time goes
        import cProfile

        cProfile.runctx("timed_update(settings)", globals(), locals(), sort="cumtime")
    run, seconds, peak = timed_update(settings)
    new_pairs = pairs_of(layout) - before
    print(
        f"  a {BATCH_FILES}-file batch ({extra} chunks): {seconds:.2f} s, memory peak {peak:.2f} GB, "
        f"{run.comparisons:,} cosines (every pair: {run.cells == 1}); {len(new_pairs)} new pairs "
        f"for {len(sources)} planted copies"
    )
    resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"  peak resident memory of this process so far: {resident:.1f} GB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--exact-max", type=int, default=100_000, help="largest size compared every pair too")
    parser.add_argument("--profile", action="store_true", help="also profile the 10-file batch's update")
    args = parser.parse_args()
    flags = open("/proc/cpuinfo").read()
    print(f"CPU flags: avx2 {'avx2' in flags}, avx512_bf16 {'avx512_bf16' in flags}")
    for n in sorted(args.vectors):
        one_size(n, args.exact_max, args.profile)


if __name__ == "__main__":
    main()
