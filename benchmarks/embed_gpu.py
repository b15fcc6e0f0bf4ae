"""Benchmark: the embedding stage on a GPU machine, ViT-B/32-shaped CLIP with random weights (the real
model's speed), camera-sized JPEGs, everything measured in this one process:

- the tutorial's approach (PIL full decode -> CLIPProcessor -> fp32 batches of 16) as the baseline,
- the model's forward pass alone on preprocessed batches, per precision,
- mm_assets' embedding stage (read, verify, draft-decode and preprocess in a thread pool the size of
  the machine, batched forward, hand-off of the vectors), per precision, with the GPU's share of the
  wall time and the cosine to fp32 and to the tutorial's embeddings.

Needs only torch, transformers, pillow and numpy (no dagster, duckdb or pyarrow), so it runs on a bare
accelerator image, and finishes in a few minutes:

    PYTHONPATH=. python benchmarks/embed_gpu.py [--photos 8000 --unique 160 --batch-size 256]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from benchmarks.embed_photos import SIZES, forward_only, tutorial_baseline, write_photos
from benchmarks.scratch import scratch_dir


def _write_share(args: tuple[Path, int, int]) -> list[Path]:
    folder, start, count = args
    return write_photos(folder / f"part{start}", count, seed=start)


def make_corpus(folder: Path, photos: int, unique: int) -> list[Path]:
    """``unique`` distinct photos written in parallel, hard-linked up to ``photos`` files (each link is
    decoded on its own, as a distinct file would be; no disk space is spent on copies)."""
    workers = os.cpu_count() or 1
    share = -(-unique // workers)
    with ProcessPoolExecutor(workers) as pool:
        parts = pool.map(_write_share, [(folder, start, share) for start in range(0, unique, share)])
        distinct = [p for part in parts for p in part][:unique]
    links = folder / "links"
    links.mkdir()
    paths = []
    for i in range(photos):
        path = links / f"photo_{i:05d}.jpg"
        os.link(distinct[i % len(distinct)], path)
        paths.append(path)
    return paths


def embed_stage(encoder, paths: list[Path], file_ids: dict[Path, str], workers: int):
    from mm_assets.encoders.embed import ImageJob, embed_images

    jobs = [ImageJob(file_ids[p], str(p), (str(p),), ((0.0, 0.0, 1.0, 1.0),)) for p in paths]
    vectors: dict[str, np.ndarray] = {}

    def keep(ids, batch):
        vectors.update(zip(ids, batch))

    stats = embed_images(encoder, jobs, keep, max_pixels=10**9, workers=workers)
    assert not stats.failures, stats.failures[:3]
    return stats, vectors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=8000)
    parser.add_argument("--unique", type=int, default=160, help="distinct JPEGs among the photos")
    parser.add_argument("--baseline", type=int, default=256, help="photos for the tutorial baseline")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decode threads")
    args = parser.parse_args()

    from mm_assets.config import EncoderConfig
    from mm_assets.encoders.clip import ClipEncoder
    from mm_assets.formats.images import decode_rgb
    from mm_assets.formats.reading import file_id_of
    from mm_assets_tests.tiny_models import build_vit_b32_clip

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"machine: {name}, {os.cpu_count()} CPUs, torch {torch.__version__}; decode threads {args.workers}")
    work = scratch_dir("mm-gpu-bench-")
    t0 = time.perf_counter()
    paths = make_corpus(work / "photos", args.photos, args.unique)
    file_ids = {p: file_id_of(p.read_bytes()) for p in paths[: args.unique]}
    file_ids.update({p: file_ids[paths[i % args.unique]] for i, p in enumerate(paths)})
    elapsed = time.perf_counter() - t0
    print(f"{len(paths)} JPEGs ({args.unique} distinct, sizes {SIZES[0]}..{SIZES[-1]}) in {elapsed:.0f}s")
    model_dir = build_vit_b32_clip(work / "vit-b32")

    baseline_paths = paths[: args.baseline]
    baseline, tutorial_vectors = tutorial_baseline(model_dir, baseline_paths, device=device)
    print(f"tutorial approach (fp32, batch 16, {device}): {baseline:.0f} images/s on {len(baseline_paths)} photos")

    results = {}
    for dtype in ("float32", "auto"):
        config = EncoderConfig("clip", model=str(model_dir), dtype=dtype, batch_size=args.batch_size, device=device)
        encoder = ClipEncoder(config)
        sample = [decode_rgb(p.read_bytes(), 10**9, encoder.preprocess.shortest_edge) for p in paths[: args.unique]]
        pixels = np.stack([encoder.preprocess(sample[i % len(sample)]) for i in range(args.batch_size)])
        model_rate = forward_only(encoder, pixels, repeats=10)
        embed_stage(encoder, paths[: args.batch_size * 2], file_ids, args.workers)  # warm-up: threads, kernels
        stats, vectors = embed_stage(encoder, paths, file_ids, args.workers)
        rate = stats.embedded / stats.wall
        results[dtype] = vectors
        print(f"\n{dtype} -> {encoder.precision}, batch {args.batch_size}:")
        print(f"  forward only: {model_rate:.0f} images/s")
        print(
            f"  embedding stage: {rate:.0f} images/s over {stats.embedded} photos ({stats.wall:.1f}s) = "
            f"{rate / baseline:.1f}x tutorial, {rate / model_rate:.0%} of forward-only; "
            f"GPU (forward) share of wall {stats.forward / stats.wall:.0%}"
        )
        print(
            f"  per-thread CPU seconds: read {stats.read:.1f}, decode {stats.decode:.1f}, "
            f"preprocess {stats.preprocess:.1f}; main thread: forward {stats.forward:.1f}, hand-off {stats.write:.1f}"
        )
        cos = [float(vectors[str(p)] @ tutorial_vectors[i]) for i, p in enumerate(baseline_paths)]
        print(f"  cosine to the tutorial's embeddings: min {min(cos):.5f}, mean {np.mean(cos):.5f}")
    cos = [float(results["auto"][k] @ results["float32"][k]) for k in list(results["float32"])[: args.unique]]
    print(f"\nauto vs float32 embeddings: min cosine {min(cos):.5f}, mean {np.mean(cos):.5f}")


if __name__ == "__main__":
    main()
