"""Benchmark: peak RSS of an embedding run as the corpus grows. Each corpus size runs `mm-assets run`
(ingest, chunk, embed, vector tables) in a fresh process, whose peak RSS is read when it exits; the
files are written beforehand by this parent process. A small CLIP and 640×480 JPEGs keep 10k images
feasible on 2 cores; memory depends on batching, not on the model's depth.

    PYTHONPATH=. python benchmarks/memory_scale.py [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.embed_photos import write_distinct_jpegs
from benchmarks.scratch import scratch_dir


def child(home: Path, src: Path, model: Path) -> None:
    import dagster as dg

    from mm_assets.config import EncoderConfig, Settings
    from mm_assets.runs import run_pipeline

    settings = Settings(home=home, sources=(src,), encoders=(EncoderConfig("clip", model=str(model), batch_size=64),))
    with dg.DagsterInstance.ephemeral() as instance:
        start = time.perf_counter()
        summary = run_pipeline(settings, [src], instance=instance)
        assert summary.ok, summary.lines()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{time.perf_counter() - start:.0f}s wall, peak RSS {peak_mb:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*map(Path, args.child))
        return

    from mm_assets.demo import build_base_model

    work = scratch_dir("mm-memory-")
    model = build_base_model(work / "model")
    for n in args.sizes:
        src = work / f"src{n}"
        write_distinct_jpegs(src, n)
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(work / f"home{n}"), str(src), str(model)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        assert out.returncode == 0, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
        print(f"{n:>6} images: {out.stdout.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
