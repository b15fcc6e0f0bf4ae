"""Benchmark: one sensor tick over a large watched tree (default 100,000 small files: half notes, half
images, each image with its caption dependencies: a sidecar it may get, a captions.csv above it).

Times the first tick (everything new: one batch), a tick with nothing new (which still checks every
path for deletion and every image's dependencies), and ticks after adding 10 files, deleting 10 and
editing one row of a captions manifest; reports the manifest and seen-index sizes and the peak RSS.

    PYTHONPATH=. python benchmarks/sensor_scale.py [--files 100000]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from benchmarks.scratch import scratch_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    args = parser.parse_args()

    import dagster as dg

    from mm_assets.assets.common import Storage
    from mm_assets.config import EncoderConfig, Settings
    from mm_assets.definitions import build_definitions

    work = scratch_dir("mm-sensor-")
    src = work / "src"
    start = time.perf_counter()
    for i in range(args.files):
        folder = src / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        if i % 2:
            (folder / f"img_{i}.png").write_bytes(b"discovery does not read images")
        else:
            (folder / f"note_{i}.txt").write_text(f"note {i}")
    (src / "d000" / "captions.csv").write_text("path,caption\nimg_1.png,a first caption\nimg_3.png,another\n")
    print(f"wrote {args.files:,} files in {time.perf_counter() - start:.0f}s")

    settings = Settings(home=work / "home", sources=(src,), encoders=(EncoderConfig("clip", model=str(work)),))
    sensor = build_definitions(settings).resolve_sensor_def("new_files_sensor")
    storage = Storage(home=str(settings.home))

    def tick(label: str) -> None:
        with dg.instance_for_test() as instance:
            context = dg.build_sensor_context(instance=instance, resources={"storage": storage})
            t0 = time.perf_counter()
            result = sensor(context)
            seconds = time.perf_counter() - t0
        files = "skipped" if isinstance(result, dg.SkipReason) else f"batch {result.run_requests[0].partition_key}"
        print(f"{label}: {seconds:.2f}s ({files})")

    tick("first tick, all new")
    tick("tick, nothing new")
    for i in range(10):
        (src / "d000" / f"added_{i}.txt").write_text("new")
    tick("tick after adding 10 files")
    for i in range(10):
        (src / "d001" / f"note_{1000 + 2 * i}.txt").unlink()
    tick("tick after deleting 10 files")
    (src / "d000" / "captions.csv").write_text("path,caption\nimg_1.png,an edited caption\nimg_3.png,another\n")
    tick("tick after editing one row of a captions.csv (one image re-batched)")
    store = settings.layout.store
    manifests = [Path(store.path(key)) for key in store.list("manifests", ".json")]
    manifests.sort(key=lambda p: p.stat().st_mtime)
    seen_index = Path(store.path(store.SEEN_INDEX))
    print(
        f"manifests: first {manifests[0].stat().st_size / 1e6:.1f} MB, last {manifests[-1].stat().st_size} bytes; "
        f"seen index {seen_index.stat().st_size / 1e6:.1f} MB; sensor cursor: none (state is the index)"
    )
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
