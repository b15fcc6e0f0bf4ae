"""A sensor that turns new or changed files in the watched folders into an ingest batch."""

import dagster as dg

from mm_assets.assets.common import Storage, ingest_batches
from mm_assets.config import Settings
from mm_assets.ingest.batches import create_batch


def build_new_files_sensor(settings: Settings, job: dg.JobDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING if settings.sources else dg.DefaultSensorStatus.STOPPED,
        description="Watches the configured source folders; added, edited and deleted files (and files whose "
        "sidecars, subtitles or linked images changed) become one ingest batch.",
    )
    def new_files_sensor(context: dg.SensorEvaluationContext, storage: Storage):
        if not settings.sources:
            return dg.SkipReason("no source folders configured (`sources:` in mm_assets.yaml or MM_ASSETS_SOURCES)")
        batch = create_batch(storage.layout, settings.sources, max_file_bytes=settings.max_file_bytes)
        if batch is None:
            return dg.SkipReason("no files added, edited or deleted")
        context.log.info(f"new ingest batch {batch}")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=batch, partition_key=batch)],
            dynamic_partitions_requests=[ingest_batches.build_add_request([batch])],
        )

    return new_files_sensor
