"""Run pending work through Dagster in this process, recorded in the instance under DAGSTER_HOME.

Used by `mm-assets run`: the same job, assets and checks as the sensor and the UI, without a daemon.
"""

from __future__ import annotations

import fcntl
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from mm_assets.assets.common import ingest_batches
from mm_assets.assets.embeddings import embedding_asset_key
from mm_assets.assets.training import fine_tuned_asset_key
from mm_assets.assets.vector_tables import serving_spec
from mm_assets.code_versions import CodeVersionLedger
from mm_assets.config import Settings
from mm_assets.definitions import INGEST_JOB, build_definitions
from mm_assets.discovery import Discovered, discovering
from mm_assets.encoders.identity import encoder_key
from mm_assets.formats.shared_decodes import drop_kept_decodes
from mm_assets.ingest.batches import read_manifest
from mm_assets.staleness import checks_of, find_stale, report_up_to_date, stale_by_batch, with_their_checks
from mm_assets.store.catalog import quarantined_files
from mm_assets.store.duck import VectorDBError
from mm_assets.store.layout import Layout
from mm_assets.store.segments import open_generation
from mm_assets.store.tables import CHUNKS, EMBEDDINGS, RAW_FILES
from mm_assets.store.vector_db import is_up_to_date

# Runs started from the command line print nothing of Dagster's own log (the summary says what
# happened, the live bars how far it is); the full event log is in the instance, visible in the UI.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}

# What each step is called in the summary ("embeddings__clip" -> "embed clip").
_STAGE_NAMES = {"raw_files": "ingest", "chunks": "chunk", "embeddings": "embed", "fine_tuned": "train"}


def _stage(step_key: str) -> str:
    head, _, tail = step_key.partition("__")
    return f"{_STAGE_NAMES.get(head, head.replace('_', ' '))} {tail}".strip()


@dataclass
class RunSummary:
    new_batch: str | None
    changes: dict[str, int] = field(default_factory=dict)  # of the new batch: added, edited, ... deleted
    batches_run: list[str] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    stale: dict[str, int] = field(default_factory=dict)  # asset -> batches materialized under an old code version
    failed_runs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the first line of each failed step's error
    vector_tables_updated: bool = False
    duplicates_pending: bool = False  # new vectors whose duplicates the run did not wait for
    files: Counter = field(default_factory=Counter)  # added, edited, moved, deleted, quarantined (ingested)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    chunks_written: int = 0
    vectors: Counter = field(default_factory=Counter)  # encoder -> vectors computed
    seconds: Counter = field(default_factory=Counter)  # stage -> seconds

    @property
    def ok(self) -> bool:
        return not self.failed_runs

    def absorb(self, result: dg.ExecuteInProcessResult) -> None:
        """The figures of one finished run, from its events."""
        materialized = {e.step_key for e in result.get_asset_materialization_events()}
        for event in result.all_events:
            if event.is_step_success and event.step_key in materialized:  # assets, not separate checks
                self.seconds[_stage(event.step_key)] += event.event_specific_data.duration_ms / 1000
            elif event.is_step_failure:
                error = event.step_failure_data.error
                while error.cause is not None:  # Dagster's wrapping: the user code's own error is the cause
                    error = error.cause
                self.errors.append(f"{_stage(event.step_key)}: {error.message.strip() or 'failed'}")
        for event in result.get_asset_materialization_events():
            meta = {k: v.value for k, v in event.materialization.metadata.items()}
            key = event.asset_key.to_user_string()
            if key == "raw_files":
                for change in ("added", "edited", "dependency", "moved", "deleted"):
                    self.files[change] += meta.get(f"files_{change}", 0)
                self.files["quarantined"] += meta.get("files_quarantined", 0)
            elif key == "chunks":
                self.chunks_written += meta.get("dagster/row_count", 0)
            elif key.startswith("embeddings/"):
                self.vectors[key.split("/", 1)[1]] += meta.get("embedded", 0)

    def lines(self) -> list[str]:
        counts = ", ".join(f"{n} {change}" for change, n in self.changes.items() if n)
        out = [f"new batch: {self.new_batch} ({counts})" if self.new_batch else "no files added, edited or deleted"]
        out += [f"out of date: {asset} in {n} batch(es) (its code version changed)" for asset, n in self.stale.items()]
        out += [f"materialized batch {b}" for b in dict.fromkeys(self.batches_run)]  # once, however many passes
        out += [f"trained {t}" for t in self.trained]
        if self.files:
            out.append("files: " + ", ".join(f"{n:,} {change}" for change, n in self.files.items() if n))
        out += [f"  quarantined {path}: {reason}" for path, reason in self.quarantined]
        if self.chunks_written or self.vectors:
            vectors = ", ".join(f"{n:,} {encoder}" for encoder, n in self.vectors.items()) or "none"
            out.append(f"chunks written: {self.chunks_written:,}; vectors computed: {vectors}")
        if self.seconds:
            out.append("time per stage: " + ", ".join(f"{stage} {s:.1f} s" for stage, s in self.seconds.items()))
        out += [f"run FAILED: {r} (see `dagster dev` for its logs)" for r in self.failed_runs]
        out += [f"  {error}" for error in self.errors]
        if self.vector_tables_updated:
            out.append("vector tables updated")
        elif "vector_tables" not in self.failed_runs:
            out.append("vector tables already up to date")
        if self.duplicates_pending:
            out.append("duplicates: not compared yet (not waited for)")
        return out


def default_instance(settings: Settings) -> dg.DagsterInstance:
    """The instance under DAGSTER_HOME; without one, a persistent instance inside the data folder."""
    dagster_home = os.environ.get("DAGSTER_HOME")
    if dagster_home and not Path(dagster_home).is_dir():
        raise ValueError(
            f"DAGSTER_HOME={dagster_home} is not a folder: create it, or unset DAGSTER_HOME "
            f"to keep runs in {settings.home / 'dagster'}"
        )
    if not dagster_home:
        home = settings.home / "dagster"
        home.mkdir(parents=True, exist_ok=True)
        config = home / "dagster.yaml"
        if not config.exists():  # an explicit (empty-ish) config: Dagster warns on every start without one
            config.write_text("telemetry:\n  enabled: false\n")
        os.environ["DAGSTER_HOME"] = str(home)
    # Two runs starting together on a new home would both create Dagster's storage and race its
    # schema migration (one crashes, or both stamp and every later run fails): one at a time.
    with open(Path(os.environ["DAGSTER_HOME"]) / ".mm_assets_instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)  # creates (or migrates) the run, event and schedule storage now
        instance.get_dynamic_partitions(ingest_batches.name)
    return instance


def pending_assets(layout: Layout, settings: Settings, batch: str) -> list[dg.AssetKey]:
    """The assets of a batch whose shards are missing (new batch, a killed run, or a new encoder)."""
    ready = [e for e in settings.encoders if not e.awaiting_training]
    store = layout.store
    if not store.exists(store.shard(RAW_FILES, batch)):
        return [dg.AssetKey("raw_files"), dg.AssetKey("chunks"), *map(embedding_asset_key, ready)]
    if not store.exists(store.shard(CHUNKS, batch)):
        return [dg.AssetKey("chunks"), *map(embedding_asset_key, ready)]
    return [embedding_asset_key(e) for e in ready if not store.exists(store.shard(EMBEDDINGS, batch, encoder_key(e)))]


class _Runner:
    """Runs selections of the project's assets in this process, recorded in the instance."""

    def __init__(self, settings: Settings, instance: dg.DagsterInstance, run_config: dict | None, summary: RunSummary):
        self.defs = build_definitions(settings)
        self.instance, self.run_config, self.summary = instance, run_config, summary
        self.tags = {"mm_assets/source": "cli"}

    def batch(self, batch: str, keys: list[dg.AssetKey]) -> bool:
        job = self.defs.resolve_job_def(INGEST_JOB)
        checks = checks_of(self.defs.resolve_asset_graph(), keys)
        result = job.get_subset(asset_selection=set(keys), asset_check_selection=checks).execute_in_process(
            partition_key=batch,
            instance=self.instance,
            run_config=self.run_config,
            raise_on_error=False,
            tags=self.tags,
        )
        self.summary.absorb(result)
        return result.success

    def unpartitioned(self, keys: list[dg.AssetKey]) -> bool:
        """The assets, with their checks but `up_to_date`."""
        result = dg.materialize(
            [*self.defs.assets, *self.defs.asset_checks],
            selection=with_their_checks(self.defs.resolve_asset_graph(), keys),
            instance=self.instance,
            resources=dict(self.defs.resources),
            run_config=self.run_config,
            raise_on_error=False,
            tags=self.tags,
        )
        self.summary.absorb(result)
        return result.success


def run_pipeline(
    settings: Settings,
    sources: list[Path],
    run_config: dict | None = QUIET_RUN_CONFIG,
    instance: dg.DagsterInstance | None = None,
    discovered: Discovered | None = None,
    wait_duplicates: bool = True,
) -> RunSummary:
    """Discover new files, then materialize whatever is missing: batches, fine-tuned models, their
    embeddings, and the vector tables. A caller that has ``discovered`` runs this inside its own
    ``discovering`` block (the CLI: entered before Dagster is imported). Without ``wait_duplicates``
    the duplicates are left to the caller (``summary.duplicates_pending``: `run_duplicates`)."""
    if discovered is not None:
        return _materialize_pending(settings, discovered, run_config, instance, wait_duplicates)
    with discovering(settings, sources) as discovered:
        return _materialize_pending(settings, discovered, run_config, instance, wait_duplicates)


def _materialize_pending(
    settings: Settings,
    discovered: Discovered,
    run_config: dict | None,
    instance: dg.DagsterInstance | None,
    wait_duplicates: bool,
) -> RunSummary:
    instance = instance or default_instance(settings)
    layout = settings.layout
    summary = RunSummary(new_batch=discovered.new_batch)
    runner = _Runner(settings, instance, run_config, summary)
    if summary.new_batch:
        summary.changes = read_manifest(layout, summary.new_batch).counts()

    batches = layout.batches()
    known = set(instance.get_dynamic_partitions(ingest_batches.name))
    instance.add_dynamic_partitions(ingest_batches.name, [b for b in batches if b not in known])

    # Assets materialized under another code version (an edited encoder, chunking or limits), per batch.
    graph = runner.defs.resolve_asset_graph()
    stale = find_stale(graph, instance)
    rerun = stale_by_batch(graph, stale)
    summary.stale = {asset.key.to_user_string(): len(asset.stale) for asset in stale.values()}
    # Fine-tuned encoders to (re)train first: embedding their batches before would use the old model.
    to_train = [
        e for e in settings.encoders if e.fine_tune and (e.awaiting_training or fine_tuned_asset_key(e) in stale)
    ]
    # Their embeddings wait, and those of the encoders fused with them.
    waiting = {embedding_asset_key(e) for e in settings.encoders if e in to_train or (e.fuse and e.base in to_train)}
    order = graph.toposorted_asset_keys

    # Only batches some asset has never materialized can lack shards (a new batch, a killed run, a new
    # encoder): the ledger says which without a storage request per batch; their shards are looked at.
    ledger = CodeVersionLedger(instance)
    partitioned = [k for k in order if graph.get(k).is_partitioned]

    def unfinished() -> set[str]:
        ledger.refresh(partitioned)
        every = set(batches)
        return set().union(*(every - ledger.materialized(key) for key in partitioned))

    def run_pending_batches() -> None:
        maybe_pending = unfinished()
        for batch in batches:
            pending = pending_assets(layout, settings, batch) if batch in maybe_pending else []
            wanted = (set(pending) | set(rerun.get(batch, ()))) - waiting
            keys = [k for k in order if k in wanted]
            if keys:
                ok = runner.batch(batch, keys)
                (summary.batches_run if ok else summary.failed_runs).append(batch)
                if ok:
                    rerun[batch] = [k for k in rerun.get(batch, ()) if k not in keys]

    run_pending_batches()
    for enc in to_train:
        key = fine_tuned_asset_key(enc)
        (summary.trained if runner.unpartitioned([key]) else summary.failed_runs).append(key.to_user_string())
    if to_train:
        waiting = set()
        run_pending_batches()  # embed every batch with the newly trained models
    drop_kept_decodes()

    # One last run: the vector tables when out of date; duplicates follow the vectors, moderation also a
    # changed policy: each compares or re-scores only what changed.
    serve = bool(batches) and not is_up_to_date(layout, serving_spec(settings))  # no batch: nothing to serve
    moderate = bool(batches) and bool(settings.policies)
    final = [dg.AssetKey("vector_tables")] if serve else []
    final += [dg.AssetKey("policy_flags")] if moderate else []
    if batches and (serve or stale or summary.batches_run or moderate):
        if wait_duplicates:
            final.append(dg.AssetKey("duplicates"))
        else:
            summary.duplicates_pending = True
    if final:
        ok = runner.unpartitioned(final)
        summary.vector_tables_updated = serve and ok
        if serve and not ok:
            summary.failed_runs.append("vector_tables")
    if stale or summary.batches_run or final:  # so the asset graph shows every asset current again
        # Runs materialize under the current code versions: with nothing stale before them, nothing is now.
        report_up_to_date(graph, instance, find_stale(graph, instance) if stale else {})
    if summary.batches_run:
        summary.quarantined = quarantined_in(layout, set(summary.batches_run))
    return summary


def quarantined_in(layout: Layout, batches: set[str]) -> list[tuple[str, str]]:
    """The files of these batches that are served as quarantined, with their reasons."""
    try:
        con, _ = open_generation(layout.db_path)
    except VectorDBError:  # nothing served yet (the vector tables failed): the run's errors say why
        return []
    try:
        return [(q["path"], q["reason"]) for q in quarantined_files(con) if q["batch"] in batches]
    finally:
        con.close()


def run_evaluation(
    settings: Settings, run_config: dict | None = QUIET_RUN_CONFIG, instance: dg.DagsterInstance | None = None
) -> RunSummary:
    return _run_one(settings, dg.AssetKey("retrieval_eval"), run_config, instance)


def run_duplicates(
    settings: Settings, run_config: dict | None = QUIET_RUN_CONFIG, instance: dg.DagsterInstance | None = None
) -> RunSummary:
    """Compare the chunks served since the last comparison (the duplicates asset, with its checks)."""
    return _run_one(settings, dg.AssetKey("duplicates"), run_config, instance)


def _run_one(
    settings: Settings, key: dg.AssetKey, run_config: dict | None, instance: dg.DagsterInstance | None
) -> RunSummary:
    """One unpartitioned asset: its summary says whether it failed, and why."""
    summary = RunSummary(None)
    if not _Runner(settings, instance or default_instance(settings), run_config, summary).unpartitioned([key]):
        summary.failed_runs.append(key.to_user_string())
    return summary
