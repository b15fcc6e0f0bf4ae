"""The one place that wires assets, checks, sensors, jobs and resources."""

import dagster as dg

from mm_assets.assets.common import Storage, ingest_batches
from mm_assets.assets.duplicates import build_duplicates_asset
from mm_assets.assets.embeddings import build_embedding_asset
from mm_assets.assets.evaluation import build_retrieval_eval_asset
from mm_assets.assets.ingest import build_ingest_assets
from mm_assets.assets.moderation import build_policy_flags_asset
from mm_assets.assets.training import build_fine_tuned_asset
from mm_assets.assets.vector_tables import build_compaction_job, build_vector_tables_asset
from mm_assets.config import ExecutorConfig, Settings
from mm_assets.config_loading import load_settings
from mm_assets.sensors import build_new_files_sensor, build_stale_assets_sensor
from mm_assets.staleness import build_up_to_date_check

INGEST_JOB = "ingest_job"


def build_executor(config: ExecutorConfig) -> dg.ExecutorDefinition:
    """The executor named in the settings; the cluster ones come from their optional packages
    (`pip install "mm-assets[cluster]"`), imported only when chosen."""
    if config.kind == "multiprocess":
        # forkserver: each step forks from a process that has already imported the definitions (and
        # torch), instead of paying seconds of imports per step as with spawn.
        preloaded = {"forkserver": {"preload_modules": ["dagster", __name__]}}
        return dg.multiprocess_executor.configured({"start_method": preloaded, **config.config})
    if config.kind == "k8s":
        from dagster_k8s import k8s_job_executor as executor
    elif config.kind == "docker":
        from dagster_docker import docker_executor as executor
    else:
        executor = dg.in_process_executor
    return executor.configured(config.config) if config.config else executor


def build_definitions(settings: Settings) -> dg.Definitions:
    raw_files, chunks = build_ingest_assets(settings)
    fine_tuned = {e.name: build_fine_tuned_asset(settings, e, raw_files) for e in settings.encoders if e.fine_tune}
    embeddings = [
        build_embedding_asset(
            enc,
            [
                chunks,
                raw_files,
                *[fine_tuned[e.name] for e in (enc, enc.base) if e is not None and e.fine_tune],
            ],
            settings.max_image_pixels,
            settings.decode_workers,
        )
        for enc in settings.encoders
    ]
    vector_tables = build_vector_tables_asset(settings, [raw_files, chunks, *embeddings])
    retrieval_eval = build_retrieval_eval_asset(settings, vector_tables)
    # Moderation, where policies are configured (as fine-tuned models appear where configured).
    policy_flags = [build_policy_flags_asset(settings, vector_tables)] if settings.policies else []
    duplicates = build_duplicates_asset(settings, vector_tables)
    served = [vector_tables, duplicates, *policy_flags]  # the vector tables and what follows them
    assets = [raw_files, chunks, *fine_tuned.values(), *embeddings, retrieval_eval, *served]
    up_to_date_checks = [build_up_to_date_check(asset) for asset in assets]
    ingest_job = dg.define_asset_job(
        INGEST_JOB,
        # The up_to_date checks look at every batch: the stale-assets sensor evaluates them, not each run.
        selection=dg.AssetSelection.assets(raw_files, chunks, *embeddings, *served)
        - dg.AssetSelection.checks(*up_to_date_checks),
        partitions_def=ingest_batches,
        description="One ingest batch end to end: files, chunks, embeddings, then the vector tables, the "
        "duplicate groups (and the moderation flags, where policies are configured).",
    )
    compaction_job, compaction_schedule = build_compaction_job(settings)
    return dg.Definitions(
        assets=assets,
        asset_checks=up_to_date_checks,
        jobs=[ingest_job, compaction_job],
        schedules=[compaction_schedule],
        sensors=[build_new_files_sensor(settings, ingest_job), build_stale_assets_sensor(settings, ingest_job)],
        resources={"storage": Storage(home=str(settings.home), store_url=settings.store_url)},
        executor=build_executor(settings.executor),
    )


defs = build_definitions(load_settings())
