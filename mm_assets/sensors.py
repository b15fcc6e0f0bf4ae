"""Sensors: new or changed files in the watched folders become an ingest batch; batches materialized
under an old code version are rematerialized."""

import json

import dagster as dg

from mm_assets.assets.common import Storage, ingest_batches
from mm_assets.config import Settings
from mm_assets.hashing import short_hash
from mm_assets.ingest.batches import create_batch, read_manifest
from mm_assets.staleness import checks_of, every_asset, find_stale, stale_by_batch, up_to_date_evaluation


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
        counts = read_manifest(storage.layout, batch).counts()
        context.log.info(f"new ingest batch {batch}: {counts}")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=batch, partition_key=batch)],
            dynamic_partitions_requests=[ingest_batches.build_add_request([batch])],
            # Shown as the sensor's cursor in the UI: the last batch and what it held.
            cursor=json.dumps({"last_batch": batch, **counts}),
        )

    return new_files_sensor


def build_stale_assets_sensor(settings: Settings, job: dg.JobDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING if settings.sources else dg.DefaultSensorStatus.STOPPED,
        description="Finds batches materialized under an older code version (an edited encoder, chunking or "
        "limits), reports each asset's `up_to_date` check and launches one run per stale batch with exactly "
        "its stale assets and what depends on them.",
    )
    def stale_assets_sensor(context: dg.SensorEvaluationContext):
        graph = context.repository_def.asset_graph
        stale = find_stale(graph, context.instance)
        reported = json.loads(context.cursor) if context.cursor else {}
        state, evaluations = {}, []
        for asset in every_asset(graph, stale):
            state[asset.key.to_user_string()] = short_hash(asset.check_outcome())
            if reported.get(asset.key.to_user_string()) != state[asset.key.to_user_string()]:
                evaluations.append(up_to_date_evaluation(asset))
        requests = [
            dg.RunRequest(
                # Once per batch and code versions: a run that fails is not relaunched every tick.
                run_key=f"stale:{batch}:{short_hash([graph.get(k).code_version for k in keys], 8)}",
                partition_key=batch,
                asset_selection=[*keys, dg.AssetKey("vector_tables")],  # and then serve the result
                asset_check_keys=list(checks_of(graph, [*keys, dg.AssetKey("vector_tables")])),
                tags={"mm_assets/reason": "code version changed"},
            )
            for batch, keys in stale_by_batch(graph, stale).items()
        ]
        return dg.SensorResult(run_requests=requests, asset_events=evaluations, cursor=json.dumps(state))

    return stale_assets_sensor
