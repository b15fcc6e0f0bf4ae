"""Which assets are out of date, at asset level: every batch whose last materialization recorded
another code version than the asset has now (the ledger in code_versions.py answers), and what
depends on it in the same batch.

Dagster shows a dynamically partitioned asset's code version only on each partition's page, so an
edited encoder is invisible in the asset graph. This module is what the `up_to_date` checks report,
what the stale-assets sensor launches and what `mm-assets run` reruns: one answer everywhere.
"""

from collections import defaultdict
from dataclasses import dataclass, field

import dagster as dg

from mm_assets.code_versions import CodeVersionLedger


@dataclass
class StaleAsset:
    """One asset's batches (or, unpartitioned, the asset itself: key ``None``) by recorded code version."""

    key: dg.AssetKey
    current: str | None
    stale: dict[str | None, str] = field(default_factory=dict)  # partition -> the code version it recorded

    def check_outcome(self) -> dict:
        """The `up_to_date` check's passed flag, severity and metadata."""
        recorded = sorted(set(self.stale.values()))
        batches = sorted(p for p in self.stale if p is not None)
        more = f" … and {len(batches) - 20} more" if len(batches) > 20 else ""
        metadata = {
            "current_code_version": self.current or "",
            "stale_batches": len(batches),
            "stale_recorded_code_versions": ", ".join(recorded),
            "stale_batch_keys": ", ".join(batches[:20]) + more,
        }
        return {"passed": not self.stale, "severity": dg.AssetCheckSeverity.WARN, "metadata": metadata}


def asset_staleness(instance: dg.DagsterInstance, key: dg.AssetKey, current: str | None) -> StaleAsset:
    """The partitions of one asset (or the asset) materialized under another code version than
    ``current``, from the ledger (code_versions.py). Partitions never materialized are missing, not stale."""
    ledger = CodeVersionLedger(instance)
    ledger.refresh([key])
    return _from_ledger(ledger, key, current)


def _from_ledger(ledger: CodeVersionLedger, key: dg.AssetKey, current: str | None) -> StaleAsset:
    return StaleAsset(key, current, ledger.stale(key, current))


def every_asset(graph, stale: dict[dg.AssetKey, StaleAsset]) -> list[StaleAsset]:
    """Every materializable asset with its stale batches (none for those not in ``stale``)."""
    return [stale.get(key, StaleAsset(key, graph.get(key).code_version)) for key in graph.materializable_asset_keys]


def report_up_to_date(graph, instance: dg.DagsterInstance, stale: dict[dg.AssetKey, StaleAsset]) -> None:
    """Every asset's `up_to_date` verdict (``stale``: as find_stale found them), recorded outside a run
    as the stale-assets sensor records it (a step per check made every `mm-assets run` half a second
    slower)."""
    for asset in every_asset(graph, stale):
        instance.report_runless_asset_event(up_to_date_evaluation(asset))


def find_stale(graph, instance: dg.DagsterInstance) -> dict[dg.AssetKey, StaleAsset]:
    """Every asset of the asset graph with at least one stale partition (or stale itself): what the
    ledger has read since its last refresh, and an indexed look-up per asset."""
    ledger = CodeVersionLedger(instance)
    ledger.refresh(graph.materializable_asset_keys)
    found = {}
    for key in graph.materializable_asset_keys:
        asset = _from_ledger(ledger, key, graph.get(key).code_version)
        if asset.stale:
            found[key] = asset
    return found


def build_up_to_date_check(asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    """An asset-level check that fails while any batch of the asset was materialized under an older
    code version: the asset graph shows it, and "Execute" re-evaluates it (the stale-assets sensor
    evaluates it on every tick)."""
    key, current = asset.key, asset.code_versions_by_key[asset.key]

    @dg.asset_check(asset=key, name=UP_TO_DATE_CHECK, description=UP_TO_DATE_DESCRIPTION)
    def up_to_date(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        return up_to_date_result(asset_staleness(context.instance, key, current))

    return up_to_date


UP_TO_DATE_CHECK = "up_to_date"
UP_TO_DATE_DESCRIPTION = (
    "Every batch was materialized with the asset's current code version (an edited encoder, chunking "
    "or limits make it fail until the stale batches are rematerialized: `mm-assets run` or the "
    "stale_assets_sensor)."
)


def up_to_date_result(asset: StaleAsset) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(asset_key=asset.key, check_name=UP_TO_DATE_CHECK, **asset.check_outcome())


def up_to_date_evaluation(asset: StaleAsset) -> dg.AssetCheckEvaluation:
    """The same result, reported from outside a run (by a sensor)."""
    outcome = asset.check_outcome()
    metadata = {
        k: dg.MetadataValue.text(v) if isinstance(v, str) else dg.MetadataValue.int(v)
        for k, v in outcome.pop("metadata").items()
    }
    return dg.AssetCheckEvaluation(asset_key=asset.key, check_name=UP_TO_DATE_CHECK, metadata=metadata, **outcome)


def stale_by_batch(graph, stale: dict[dg.AssetKey, StaleAsset]) -> dict[str, list[dg.AssetKey]]:
    """Per batch, the partitioned assets to rematerialize: the stale ones and everything downstream
    of them in the same batch (new chunks need new vectors), in dependency order."""
    partitioned = [k for k in graph.toposorted_asset_keys if graph.get(k).is_partitioned]
    rerun: dict[str, set[dg.AssetKey]] = defaultdict(set)
    for asset in stale.values():
        for batch in asset.stale:
            if batch is not None:
                rerun[batch].add(asset.key)
    for keys in rerun.values():
        frontier = list(keys)
        while frontier:
            for child in graph.get(frontier.pop()).child_keys:
                if child not in keys and graph.get(child).is_partitioned:
                    keys.add(child)
                    frontier.append(child)
    return {batch: [k for k in partitioned if k in keys] for batch, keys in sorted(rerun.items())}


def checks_of(graph, keys) -> set[dg.AssetCheckKey]:
    """The checks that run with these assets: all of theirs but `up_to_date`, which looks at every
    batch and is reported by the stale-assets sensor (and at the end of `mm-assets run`)."""
    keys = set(keys)
    return {c for c in graph.asset_check_keys if c.asset_key in keys and c.name != UP_TO_DATE_CHECK}


def with_their_checks(graph, keys) -> dg.AssetSelection:
    """These assets and their checks but `up_to_date`, as one selection."""
    return dg.AssetSelection.assets(*keys).without_checks() | dg.AssetSelection.checks(*checks_of(graph, keys))
