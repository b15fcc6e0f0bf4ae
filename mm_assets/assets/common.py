"""What every asset shares: the batch partitions, the storage resource, metadata helpers."""

import warnings
from collections.abc import Iterable
from pathlib import Path

import dagster as dg
import pyarrow as pa

from mm_assets.store.layout import Layout
from mm_assets.store.tables import COLUMN_DESCRIPTIONS

ingest_batches = dg.DynamicPartitionsDefinition(name="ingest_batches")

# Checks per batch (AssetCheckSpec(partitions_def=...)) are a preview feature of Dagster 1.13: the
# warning would print on every load of the definitions.
warnings.filterwarnings(
    "ignore", category=dg.PreviewWarning, message="Specifying a partitions_def on an AssetCheckSpec"
)


class Storage(dg.ConfigurableResource):
    """Where the project's data lives: the shard store (a local folder or an fsspec URL such as
    ``s3://bucket/prefix``; empty = the home folder) and the local home folder (the DuckDB file)."""

    home: str
    store_url: str | None = None

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.home), self.store_url)


# Who to ask about every asset, and tags to filter the asset graph by.
OWNERS = ["team:mm_assets"]


def tags(stage: str) -> dict[str, str]:
    return {"stage": stage, "product": "mm_assets"}


def column_schema(columns: Iterable[tuple[str, str]]) -> dg.TableSchema:
    """(name, type) pairs as Dagster's column schema, each column with what it means."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name, kind, description=COLUMN_DESCRIPTIONS.get(name)) for name, kind in columns]
    )


def table_metadata(table: pa.Table, location: str) -> dict:
    """Dagster's standard keys for a shard: where it is, its rows, its columns with what they mean."""
    return {
        "dagster/uri": location,
        "dagster/row_count": table.num_rows,
        "dagster/column_schema": column_schema((f.name, str(f.type)) for f in table.schema),
    }


def require_batch(context: dg.AssetExecutionContext, layout: Layout) -> str:
    """The run's batch, which discovery must have created. A partition added by hand in the launch
    dialog has no manifest: it is removed again and the run fails with what to do instead."""
    batch = context.partition_key
    if not layout.store.exists(layout.store.manifest(batch)):
        context.instance.delete_dynamic_partition(ingest_batches.name, batch)
        raise dg.Failure(
            description=f"{batch!r} is not an ingest batch, so it was removed again. Batches are made by "
            "discovery: add files to a source folder (the new_files_sensor picks them up) or run "
            "`mm-assets run DIR`; then materialize one of the batches it lists."
        )
    return batch


def markdown_table(rows: list[dict], columns: list[str], limit: int = 50) -> dg.MetadataValue:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows[:limit]:
        lines.append("| " + " | ".join(str(row.get(c, "")).replace("|", "\\|") for c in columns) + " |")
    if len(rows) > limit:
        lines.append(f"\n… and {len(rows) - limit} more")
    return dg.MetadataValue.md("\n".join(lines) if rows else "_none_")
