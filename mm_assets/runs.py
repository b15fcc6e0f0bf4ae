"""Run pending work through Dagster in this process, recorded in the instance under DAGSTER_HOME.

Used by `mm-assets run`: the same job, assets and checks as the sensor and the UI, without a daemon.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from mm_assets.assets.embeddings import embedding_asset_key
from mm_assets.config import Settings
from mm_assets.definitions import INGEST_JOB, build_definitions
from mm_assets.encoders.resolve import resolve_model
from mm_assets.ingest.batches import create_batch
from mm_assets.store.layout import Layout

PARTITIONS = "ingest_batches"


@dataclass
class RunSummary:
    new_batch: str | None
    batches_run: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    vector_tables_rebuilt: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed_runs

    def lines(self) -> list[str]:
        out = [f"new batch: {self.new_batch}" if self.new_batch else "no new or changed files"]
        out += [f"materialized batch {b}" for b in self.batches_run]
        out += [f"run FAILED: {r} (see `dagster dev` for its logs)" for r in self.failed_runs]
        out.append("vector tables rebuilt" if self.vector_tables_rebuilt else "vector tables already up to date")
        return out


def default_instance(settings: Settings) -> dg.DagsterInstance:
    """The instance under DAGSTER_HOME; without one, a persistent instance inside the data folder."""
    if not os.environ.get("DAGSTER_HOME"):
        home = settings.home / "dagster"
        home.mkdir(parents=True, exist_ok=True)
        config = home / "dagster.yaml"
        if not config.exists():  # an explicit (empty-ish) config: Dagster warns on every start without one
            config.write_text("telemetry:\n  enabled: false\n")
        os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def pending_assets(layout: Layout, settings: Settings, batch: str) -> list[dg.AssetKey]:
    """The assets of a batch whose shards are missing (new batch, a killed run, or a new encoder)."""
    embeddings = [
        embedding_asset_key(e) for e in settings.encoders if not layout.shard("embeddings", batch, e.key).exists()
    ]
    if not layout.shard("raw_files", batch).exists():
        return [dg.AssetKey("raw_files"), dg.AssetKey("chunks"), *[embedding_asset_key(e) for e in settings.encoders]]
    if not layout.shard("chunks", batch).exists():
        return [dg.AssetKey("chunks"), *[embedding_asset_key(e) for e in settings.encoders]]
    return embeddings


def run_pipeline(settings: Settings, sources: list[Path], run_config: dict | None = None,
                 instance: dg.DagsterInstance | None = None) -> RunSummary:
    # Fail fast, before any batch or run exists, when a model is missing.
    for model, revision in {(settings.tokenizer_source, None), *((e.model, e.revision) for e in settings.encoders)}:
        resolve_model(model, revision)
    instance = instance or default_instance(settings)
    layout = Layout(settings.home)
    job = build_definitions(settings).resolve_job_def(INGEST_JOB)
    summary = RunSummary(new_batch=create_batch(layout, sources))

    batches = sorted(p.stem for p in layout.manifests.glob("*.json"))
    known = set(instance.get_dynamic_partitions(PARTITIONS))
    instance.add_dynamic_partitions(PARTITIONS, [b for b in batches if b not in known])
    for batch in batches:
        keys = pending_assets(layout, settings, batch)
        if not keys:
            continue
        result = job.execute_in_process(
            partition_key=batch, instance=instance, asset_selection=keys, run_config=run_config, raise_on_error=False,
            tags={"mm_assets/source": "cli"},
        )
        (summary.batches_run if result.success else summary.failed_runs).append(batch)

    if summary.batches_run or not layout.db_path.exists():
        result = job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("vector_tables")], run_config=run_config,
            raise_on_error=False, partition_key=batches[-1] if batches else None, tags={"mm_assets/source": "cli"},
        )
        summary.vector_tables_rebuilt = result.success
        if not result.success:
            summary.failed_runs.append("vector_tables")
    return summary
