"""duplicates: exact, near and semantic duplicates among the served chunks, grouped."""

from dataclasses import asdict

import dagster as dg

from mm_assets.assets.common import OWNERS, Storage, tags
from mm_assets.config import Settings
from mm_assets.duplicates import DUPLICATES_VERSION
from mm_assets.hashing import short_hash


def build_duplicates_asset(settings: Settings, vector_tables_asset):
    @dg.asset(
        group_name="serving",
        owners=OWNERS,
        tags=tags("compare"),
        kinds={"duckdb", "parquet"},
        deps=[vector_tables_asset],
        # New thresholds or another encoder mark it stale; materializing then compares everything again.
        code_version=f"{DUPLICATES_VERSION}-{short_hash(asdict(settings.duplicates))}",
        description="Duplicate groups among the served chunks: exact (one file's content under several paths), "
        "near (images and video frames whose perceptual hashes differ in at most duplicates.near_bits bits) and "
        "semantic (vectors at or above duplicates.semantic_cosine). Only chunks new since the last update are "
        "compared (with every live one); `mm-assets duplicates` lists the groups, `search --dedup` collapses them.",
    )
    def duplicates(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
        # Imported when the step runs, not when the definitions load (see mm_assets/assets/__init__.py).
        from mm_assets.duplicates import update_duplicates
        from mm_assets.store.served import ServedVectors

        with ServedVectors(storage.layout.db_path) as served:
            run = update_duplicates(settings, served, log=context.log.info)
        return dg.MaterializeResult(
            metadata={
                **{name: value for name, value in asdict(run).items() if name != "seconds" and value is not None},
                "seconds": round(run.seconds, 2),
                "dagster/uri": str(storage.layout.duplicate_pairs),
            }
        )

    return duplicates
