"""The code-version ledger: what is out of date, answered from what was read since the last time,
equal to what replaying the whole event log says."""

from __future__ import annotations

import random

import dagster as dg

from mm_assets.code_versions import CODE_VERSION_TAG, LEDGER_FILE, CodeVersionLedger
from mm_assets.definitions import build_definitions
from mm_assets.staleness import find_stale
from mm_assets_tests.helpers import ingest_with_dagster

RAW, CHUNKS = dg.AssetKey("raw_files"), dg.AssetKey("chunks")


def replayed_staleness(instance: dg.DagsterInstance, key: dg.AssetKey, current: str | None) -> dict:
    """What the ledger must equal: every materialization of the asset read, newest first, the first
    of each partition its latest (how staleness was found before the ledger)."""
    latest: dict = {}
    cursor = None
    while True:
        page = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=100, cursor=cursor)
        for record in page.records:
            latest.setdefault(record.partition_key, record.asset_materialization.tags.get(CODE_VERSION_TAG))
        if not page.has_more:
            break
        cursor = page.cursor
    return {p: v for p, v in latest.items() if v is not None and v != current}


def materialize(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None, version: str | None):
    tags = {CODE_VERSION_TAG: version} if version else {}
    instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition, tags=tags))


def test_the_ledger_equals_a_replay_of_the_event_log_through_any_history():
    rng = random.Random(3)
    with dg.instance_for_test() as instance:
        ledger = CodeVersionLedger(instance)
        for step in range(600):  # batches rematerialized under three versions, refreshed now and then
            key = rng.choice([RAW, CHUNKS])
            materialize(instance, key, f"b{rng.randrange(150):04d}", rng.choice(["v1", "v2", "v3", None]))
            if step % 97 == 0:
                ledger.refresh([RAW, CHUNKS])
        materialize(instance, dg.AssetKey("vector_tables"), None, "v1")
        keys = [RAW, CHUNKS, dg.AssetKey("vector_tables"), dg.AssetKey("never_materialized")]
        ledger.refresh(keys)
        for key in keys:
            for current in ("v1", "v2", "v3", None):
                assert ledger.stale(key, current) == replayed_staleness(instance, key, current), (key, current)
        assert ledger.stale(dg.AssetKey("vector_tables"), "v2") == {None: "v1"}

        # Derived: a lost ledger reads the event log again and says the same.
        before = ledger.stale(RAW, "v2")
        (ledger.path.parent / LEDGER_FILE).unlink()
        ledger.refresh([RAW])
        assert ledger.stale(RAW, "v2") == before

        # Materializations wiped in the UI are gone from the ledger too.
        instance.wipe_assets([CHUNKS])
        ledger.refresh([CHUNKS])
        assert ledger.stale(CHUNKS, "v0") == {} == replayed_staleness(instance, CHUNKS, "v0")


def test_a_refresh_reads_only_what_was_recorded_since_the_last(monkeypatch):
    with dg.instance_for_test() as instance:
        for i in range(400):
            materialize(instance, RAW, f"b{i:04d}", "v1")
        ledger = CodeVersionLedger(instance)
        ledger.refresh([RAW])
        queries = []
        real_fetch = instance.fetch_materializations
        counted = lambda *a, **k: queries.append(a) or real_fetch(*a, **k)  # noqa: E731
        monkeypatch.setattr(instance, "fetch_materializations", counted)
        ledger.refresh([RAW])
        assert len(queries) <= 2, "nothing new: a look past the cursor (and at the latest record), whatever the history"
        materialize(instance, RAW, "b0007", "v2")
        queries.clear()
        ledger.refresh([RAW])
        assert len(queries) == 1 and ledger.stale(RAW, "v1") == {"b0007": "v2"}


def test_staleness_after_a_model_change_comes_from_the_ledger_as_from_the_log(settings, tiny_clip_other):
    from dataclasses import replace

    from mm_assets.config import EncoderConfig

    with dg.instance_for_test() as instance:
        assert ingest_with_dagster(settings, instance)[1].success
        changed = replace(settings, encoders=(EncoderConfig("clip", model=str(tiny_clip_other)),))
        graph = build_definitions(changed).resolve_asset_graph()
        stale = find_stale(graph, instance)
        for key in graph.materializable_asset_keys:
            expected = replayed_staleness(instance, key, graph.get(key).code_version)
            assert (stale[key].stale if key in stale else {}) == expected, key
        assert {k.to_user_string() for k in stale} == {"embeddings/clip"}


def test_a_run_looks_at_the_shards_of_the_new_batch_only_however_many_came_before(settings, monkeypatch):
    """Which batches lack shards comes from the ledger: the shard store is asked about the batch the
    run made, not about every batch of the history (a request each on object storage)."""
    from mm_assets.runs import run_pipeline
    from mm_assets.store.shards import ShardStore

    asked: list[str] = []
    real_exists = ShardStore.exists
    monkeypatch.setattr(ShardStore, "exists", lambda store, key: asked.append(key) or real_exists(store, key))
    notes = settings.sources[0] / "texts"
    with dg.instance_for_test() as instance:
        for i in range(4):
            (notes / f"new_{i}.txt").write_text(f"note number {i} arrives in a batch of its own")
            asked.clear()
            summary = run_pipeline(settings, list(settings.sources), instance=instance)
            assert summary.ok and summary.new_batch
            shards = {k for k in asked if k.startswith("shards/") and k.endswith(".parquet")}
            older = {k for k in shards if not k.endswith(f"/{summary.new_batch}.parquet")}
            assert not older, f"run {i} asked about the shards of earlier batches: {sorted(older)}"
        assert len(settings.layout.batches()) == 4
