"""policy_flags: every served chunk scored against the configured moderation policies."""

from dataclasses import asdict

import dagster as dg

from mm_assets.assets.common import OWNERS, Storage, markdown_table, tags
from mm_assets.config import Settings
from mm_assets.hashing import short_hash
from mm_assets.moderation import MODERATION_VERSION


def build_policy_flags_asset(settings: Settings, vector_tables_asset):
    @dg.asset(
        group_name="serving",
        owners=OWNERS,
        tags=tags("moderate"),
        kinds={"duckdb"},
        deps=[vector_tables_asset],
        # A changed policy marks this asset stale; materializing re-scores only the policies that changed.
        code_version=f"{MODERATION_VERSION}-{short_hash([asdict(p) for p in settings.policies])}",
        description="Every served chunk scored against each moderation policy (its phrasings embedded by the "
        "encoder's text tower); chunks at or above the policy's threshold, given or chosen on labelled "
        "examples, are flagged in flags.duckdb (`mm-assets flags`).",
    )
    def policy_flags(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
        # Imported when the step runs, not when the definitions load (see mm_assets/assets/__init__.py).
        from mm_assets.moderation import update_policy_flags
        from mm_assets.store.served import ServedVectors

        with ServedVectors(storage.layout.db_path) as served:
            runs = update_policy_flags(settings, served, log=context.log.info)
        rows = [
            {
                "policy": r.policy,
                "flagged": r.n_flagged,
                "scored": r.n_scored,
                "threshold": r.threshold,
                "precision": r.precision,
                "recall": r.recall,
                "labelled": r.n_labelled,
            }
            for r in runs.values()
        ]
        for r in runs.values():
            if r.note:
                context.log.warning(f"policy {r.policy}: {r.note}")
        return dg.MaterializeResult(
            metadata={
                "policies": markdown_table(rows, list(rows[0]) if rows else ["policy"]),
                **{f"{r.policy}/flagged": r.n_flagged for r in runs.values()},
                **{
                    f"{r.policy}/{m}": getattr(r, m)
                    for r in runs.values()
                    for m in ("precision", "recall", "threshold")
                    if getattr(r, m) is not None
                },
                "dagster/uri": str(storage.layout.flags),
            }
        )

    return policy_flags
