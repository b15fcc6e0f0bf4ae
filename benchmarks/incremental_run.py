"""Benchmark: what a run costs when little is new. With --files already processed (ViT-B/32-shaped
model, 640×480 photos and notes), add 10 new files and rename one, and time the next `mm-assets run` against
the full run and against a run with nothing new (the fixed cost), all in one process:

    PYTHONPATH=. python benchmarks/incremental_run.py [--files 2000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.embed_photos import write_distinct_jpegs
from benchmarks.scratch import scratch_dir


def write_notes(folder: Path, n: int, prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{prefix}_{i:05d}.txt").write_text(f"Note {prefix} {i}: a short field note about sample {i}.")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()

    import dagster as dg

    from mm_assets.config import EncoderConfig, Settings
    from mm_assets.runs import run_pipeline
    from mm_assets_tests.tiny_models import build_vit_b32_clip

    work = scratch_dir("mm-incremental-")
    src = work / "src"
    photos = args.files * 4 // 5
    write_distinct_jpegs(src / "photos", photos)
    write_notes(src / "notes", args.files - photos, "note")
    config = EncoderConfig("clip", model=str(build_vit_b32_clip(work / "vit-b32")), batch_size=32)
    settings = Settings(home=work / "home", sources=(src,), encoders=(config,))

    with dg.DagsterInstance.ephemeral() as instance:

        def timed_run(label: str) -> tuple[float, int]:
            start = time.perf_counter()
            summary = run_pipeline(settings, [src], instance=instance)
            wall = time.perf_counter() - start
            assert summary.ok, summary.lines()
            records = instance.fetch_materializations(dg.AssetKey(["embeddings", "clip"]), limit=1).records
            embedded = records[0].asset_materialization.metadata["embedded"].value if summary.batches_run else 0
            print(f"{label}: {wall:.1f}s, embedded {embedded}")
            return wall, embedded

        full, n_full = timed_run(f"full run, {args.files} files")
        noop, _ = timed_run("run with nothing new")
        write_distinct_jpegs(src / "new_photos", 5, first=photos)
        write_notes(src / "new_notes", 5, "new")
        renamed = next((src / "photos").iterdir())
        renamed.rename(renamed.with_name("renamed_" + renamed.name))
        incremental, n_incremental = timed_run("10 new files + 1 renamed")

    assert n_incremental == 10, f"expected exactly the 10 new items embedded, got {n_incremental}"
    print(
        f"\nincremental run: {incremental / full:.1%} of the full run's wall time "
        f"(its share of the items: {10 / n_full:.1%}); fixed cost of a run {noop:.1f}s, "
        f"marginal cost of the 11 changed files {incremental - noop:.1f}s"
    )


if __name__ == "__main__":
    main()
