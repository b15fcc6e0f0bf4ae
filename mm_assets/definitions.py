"""The one place that wires assets, checks, sensors, jobs and resources."""

import dagster as dg

from mm_assets.assets.common import Storage, ingest_batches
from mm_assets.assets.embeddings import build_embedding_asset
from mm_assets.assets.ingest import build_ingest_assets
from mm_assets.assets.vector_tables import build_vector_tables_asset
from mm_assets.config import Settings, load_settings
from mm_assets.sensors import build_new_files_sensor

INGEST_JOB = "ingest_job"


def build_definitions(settings: Settings) -> dg.Definitions:
    raw_files, chunks = build_ingest_assets(settings)
    embeddings = [
        build_embedding_asset(enc, chunks, raw_files, settings.max_image_pixels, settings.decode_workers)
        for enc in settings.encoders
    ]
    vector_tables = build_vector_tables_asset(settings, [raw_files, chunks, *embeddings])
    ingest_job = dg.define_asset_job(
        INGEST_JOB,
        selection=dg.AssetSelection.assets(raw_files, chunks, *embeddings, vector_tables),
        partitions_def=ingest_batches,
        description="One ingest batch end to end: files, chunks, embeddings, then the vector tables.",
    )
    return dg.Definitions(
        assets=[raw_files, chunks, *embeddings, vector_tables],
        jobs=[ingest_job],
        sensors=[build_new_files_sensor(settings, ingest_job)],
        resources={"storage": Storage(home=str(settings.home))},
    )


defs = build_definitions(load_settings())
