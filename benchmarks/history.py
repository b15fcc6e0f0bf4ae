"""Benchmark: what "which batches are out of date" costs as the history grows (issue 28, first part).

Histories of N batches are written with Dagster's own API into a fresh instance: each batch's
raw_files, chunks and embeddings materialized under code version v1, a tenth of them again later
(rematerializations), and five batches' embeddings left under an older code version (stale). For each N,
in the same run: the replay of the whole event log that staleness used before (every
materialization read), the ledger's first refresh (reading the log once), and then what every run
and sensor tick pays: a refresh with one new materialization and the stale answer for all three
assets. The last column is that cost against the same figure at the smallest N.

    PYTHONPATH=. python benchmarks/history.py [--sizes 100 1000 10000]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.scratch import scratch_dir

ASSETS = ("raw_files", "chunks", "embeddings/clip")


def replay(instance, key, current: str) -> dict:
    """Staleness as it was found before the ledger: every materialization read, newest first."""
    import dagster as dg

    latest, cursor = {}, None
    while True:
        page = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1000, cursor=cursor)
        for record in page.records:
            latest.setdefault(record.partition_key, record.asset_materialization.tags.get("dagster/code_version"))
        if not page.has_more:
            return {p: v for p, v in latest.items() if v not in (None, current)}
        cursor = page.cursor


def build_history(instance, n: int) -> None:
    import dagster as dg

    def materialize(asset: str, batch: str, version: str) -> None:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                dg.AssetKey.from_user_string(asset), partition=batch, tags={"dagster/code_version": version}
            )
        )

    batches = [f"b{i:07d}" for i in range(n)]
    for i, batch in enumerate(batches):
        for asset in ASSETS:
            materialize(asset, batch, "v0" if asset == ASSETS[-1] and i < 5 else "v1")
    for batch in batches[::10]:  # a tenth rematerialized
        materialize("chunks", batch, "v1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    args = parser.parse_args()

    import dagster as dg

    from mm_assets.code_versions import CodeVersionLedger

    work = scratch_dir("mm-history-")
    keys = [dg.AssetKey.from_user_string(a) for a in ASSETS]
    print(
        "| batches | events | build s | replay s | ledger first refresh s | per run: refresh + answer ms | x smallest |"
    )
    print("|---|---|---|---|---|---|---|")
    baseline = None
    for n in args.sizes:
        (work / f"instance-{n}").mkdir()
        with dg.instance_for_test(temp_dir=str(work / f"instance-{n}")) as instance:
            t0 = time.perf_counter()
            build_history(instance, n)
            built = time.perf_counter() - t0
            events = 3 * n + len(range(0, n, 10))
            t0 = time.perf_counter()
            replayed = {k: replay(instance, k, "v1") for k in keys}
            replay_s = time.perf_counter() - t0
            ledger = CodeVersionLedger(instance)
            t0 = time.perf_counter()
            ledger.refresh(keys)
            first_s = time.perf_counter() - t0
            samples = []
            for i in range(20):  # what a run or a tick pays: one new materialization, then the answer
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(keys[0], partition=f"b{i:07d}", tags={"dagster/code_version": "v1"})
                )
                t0 = time.perf_counter()
                ledger.refresh(keys)
                answer = {k: ledger.stale(k, "v1") for k in keys}
                samples.append(time.perf_counter() - t0)
            per_run_ms = sorted(samples)[len(samples) // 2] * 1000
            assert answer == replayed, "the ledger and the replay disagree"
            assert len(answer[keys[-1]]) == 5
            baseline = baseline or per_run_ms
            print(
                f"| {n:,} | {events:,} | {built:.1f} | {replay_s:.2f} | {first_s:.2f} | {per_run_ms:.1f} "
                f"| {per_run_ms / baseline:.2f} |"
            )


if __name__ == "__main__":
    main()
