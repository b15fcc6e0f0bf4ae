"""Benchmark: a store that churns. 2,000 files (photos and notes, ViT-B/32-shaped model) are processed;
then 5% are deleted, 5% edited, 2% renamed and 1% moved to the other source folder, and `mm-assets run`
runs again. Checks what a user relies on and prints the cost against the full run's:

- zero stale hits: no query aimed at deleted or edited content (its old text, its old image) finds it
  in the top 10;
- the encoder is called for exactly the changed items (edited files), never for renames and moves;
- renamed and moved files are served under their new paths.

    PYTHONPATH=. python benchmarks/churn.py [--files 2000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import time

from benchmarks.embed_photos import write_distinct_jpegs
from benchmarks.incremental_run import write_notes
from benchmarks.scratch import scratch_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()

    import dagster as dg

    from mm_assets.config import EncoderConfig, Settings
    from mm_assets.runs import run_pipeline
    from mm_assets.search.query import Searcher
    from mm_assets_tests.tiny_models import build_vit_b32_clip

    work = scratch_dir("mm-churn-")
    a, b, kept = work / "src_a", work / "src_b", work / "queries"
    b.mkdir(parents=True)
    kept.mkdir()
    photos = args.files // 2
    write_distinct_jpegs(a / "photos", photos)
    write_notes(a / "notes", args.files - photos, "note")
    config = EncoderConfig("clip", model=str(build_vit_b32_clip(work / "vit-b32")), batch_size=32)
    settings = Settings(home=work / "home", sources=(a, b), encoders=(config,))
    rng = random.Random(0)

    with dg.DagsterInstance.ephemeral() as instance:

        def timed_run(label: str) -> tuple[float, int]:
            start = time.perf_counter()
            summary = run_pipeline(settings, [a, b], instance=instance)
            wall = time.perf_counter() - start
            assert summary.ok, summary.lines()
            records = instance.fetch_materializations(dg.AssetKey(["embeddings", "clip"]), limit=1).records
            embedded = records[0].asset_materialization.metadata["embedded"].value
            print(f"{label}: {wall:.1f}s, embedded {embedded}; {summary.lines()[0]}")
            return wall, embedded

        full, n_full = timed_run(f"full run, {args.files} files")

        files = sorted(p for p in a.rglob("*") if p.is_file())
        rng.shuffle(files)
        n = len(files)
        deleted = files[: n * 5 // 100]
        edited = files[len(deleted) : len(deleted) + n * 5 // 100]
        renamed = files[len(deleted) + len(edited) : len(deleted) + len(edited) + n * 2 // 100]
        moved = files[len(deleted) + len(edited) + len(renamed) :][: n // 100]
        old_text = {p: p.read_text() for p in deleted + edited if p.suffix == ".txt"}
        for p in deleted + edited:
            if p.suffix == ".jpg":
                shutil.copy(p, kept / f"{p.parent.name}_{p.name}")
        for p in deleted:
            p.unlink()
        for i, p in enumerate(edited):
            if p.suffix == ".txt":
                p.write_text(f"Edited note {i}: the survey moved to the northern ridge in spring.")
            else:
                write_distinct_jpegs(work / "fresh", 1, first=10**6 + i)
                (work / "fresh" / f"img_{10**6 + i:06d}.jpg").replace(p)
        new_paths = {}
        for p in renamed:
            new_paths[p] = p.with_name("renamed_" + p.name)
            p.rename(new_paths[p])
        for p in moved:
            new_paths[p] = b / p.name
            p.rename(new_paths[p])

        churned, n_churned = timed_run(
            f"after churn ({len(deleted)} deleted, {len(edited)} edited, {len(renamed)} renamed, {len(moved)} moved)"
        )

    stale = checked = 0
    with Searcher(settings.db_path) as searcher:
        for p, text in old_text.items():
            hits = searcher.search(text=text, k=10)
            checked += 1
            stale += any((h.path == str(p) and p in deleted) or h.text == text for h in hits)
        for p in deleted + edited:
            if p.suffix == ".jpg":
                hits = searcher.search(image=kept / f"{p.parent.name}_{p.name}", k=10, modality="image")
                checked += 1
                stale += any(h.path == str(p) and p in deleted for h in hits)
        served = {r[0] for r in searcher.served.connection().execute("SELECT path FROM files").fetchall()}
    missing_moves = [p for p in new_paths.values() if str(p) not in served]
    still_served = [p for p in deleted + list(new_paths) if str(p) in served]
    print(
        f"\nstale hits in the top 10: {stale} of {checked} queries aimed at deleted or edited content; "
        f"deleted or old paths still served: {len(still_served)}; renamed/moved files not at their new path: "
        f"{len(missing_moves)}"
    )
    print(
        f"encoder calls: {n_churned} for {len(edited)} edited files (one chunk each); the full run embedded "
        f"{n_full}. Churn run wall time {churned:.1f}s = {churned / full:.1%} of the full run's {full:.1f}s"
    )
    assert stale == 0 and not still_served and not missing_moves and n_churned == len(edited)


if __name__ == "__main__":
    main()
