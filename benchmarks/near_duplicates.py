"""Benchmark: how well duplicates are found, and what one new file costs the duplicates asset.

N generated photos (smooth colour fields with shapes), each copied resized to half, recompressed at
JPEG quality 25, cropped by 10% of each side and colour-shifted, go through `mm-assets run`; the
pairs the duplicates asset finds are scored against the truth per kind of link, and the near links
again for several hash thresholds (from the served hashes, no rerun). Then one more copy is added and
the run repeated: the duplicates step's time against the first run's.

Semantic figures depend on the model: with no model given, a randomly initialised tiny CLIP (whose
vectors mean nothing) with a strict threshold; give a real one with --model.

    PYTHONPATH=. python benchmarks/near_duplicates.py [--photos 200] [--model PATH] [--semantic-cosine 0.96]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.scratch import scratch_dir


def _step_seconds(instance) -> float:
    import dagster as dg

    event = instance.get_latest_materialization_event(dg.AssetKey("duplicates"))
    return event.asset_materialization.metadata["seconds"].value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--model", help="a CLIP model directory (default: a tiny random one)")
    parser.add_argument("--semantic-cosine", type=float, help="default: 0.96, or 0.99995 for the tiny model")
    args = parser.parse_args()

    import dagster as dg

    from mm_assets.config import EncoderConfig, Settings
    from mm_assets.config_sections import DuplicatesConfig
    from mm_assets.duplicates import chunk_paths, near_pairs, read_pairs
    from mm_assets.evaluation.duplicates import copy_detection_figures, original_image, write_copies
    from mm_assets.runs import run_pipeline
    from mm_assets.store.segments import open_generation
    from mm_assets_tests.tiny_models import build_tiny_clip

    work = scratch_dir("mm-duplicates-")
    truth = write_copies(work / "photos", args.photos)
    model = args.model or str(build_tiny_clip(work / "tiny"))
    cosine = args.semantic_cosine or (0.96 if args.model else 0.99995)
    settings = Settings(
        home=work / "home",
        sources=(work / "photos",),
        encoders=(EncoderConfig("clip", model=model, batch_size=32),),
        duplicates=DuplicatesConfig(semantic_cosine=cosine),
    )
    print(
        f"{len(truth)} images ({args.photos} originals x 5), near_bits {settings.duplicates.near_bits}, "
        f"semantic_cosine {cosine}, model {model}"
    )
    with dg.DagsterInstance.ephemeral() as instance:
        start = time.perf_counter()
        assert run_pipeline(settings, list(settings.sources), instance=instance).ok
        first_run, first_step = time.perf_counter() - start, _step_seconds(instance)

        con, _ = open_generation(settings.db_path)
        pairs = read_pairs(settings.layout.duplicate_pairs)
        hashed = con.execute(
            "SELECT chunk_id, phash, hash(file_id) AS file FROM chunks WHERE phash IS NOT NULL ORDER BY chunk_id"
        ).to_arrow_table()
        paths_of = chunk_paths(con, set(hashed.column("chunk_id").to_pylist()))
        con.close()
        columns = [
            "link",
            "precision",
            "grouped pairs",
            "recall resized",
            "recall recompressed",
            "recall cropped",
            "recall colour_shifted",
        ]
        print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
        rows = copy_detection_figures(pairs, paths_of, truth)
        import pyarrow as pa

        for bits in (4, 6, 8, 12, 14):
            near = near_pairs(hashed, hashed, bits, settings.duplicates.links_per_chunk)
            found = {(min(a, b), max(a, b)) for a, b in zip(near["x"].to_pylist(), near["y"].to_pylist())}
            table = pa.table(
                {
                    "a": [a for a, _ in found],
                    "b": [b for _, b in found],
                    "link": ["near"] * len(found),
                    "score": [0.0] * len(found),
                }
            )
            rows.append({**copy_detection_figures(table, paths_of, truth)[0], "link": f"near, {bits} bits"})
        for row in rows:
            print(
                "| " + " | ".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns) + " |"
            )

        original_image(1).resize((400, 300)).save(work / "photos" / "one_more.jpg", quality=80)
        start = time.perf_counter()
        assert run_pipeline(settings, list(settings.sources), instance=instance).ok
        print(
            f"first run {first_run:.1f} s (duplicates step {first_step:.2f} s, {len(truth)} new chunks); "
            f"one new photo: run {time.perf_counter() - start:.1f} s, duplicates step {_step_seconds(instance):.2f} s"
        )


if __name__ == "__main__":
    main()
