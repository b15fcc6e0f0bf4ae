"""What every asset shares: the batch partitions, the storage resource, metadata helpers."""

import warnings
from pathlib import Path

import dagster as dg
import pyarrow as pa

from mm_assets.store.layout import Layout

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


def table_metadata(table: pa.Table, location: str) -> dict:
    return {
        "dagster/row_count": table.num_rows,
        "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in table.schema]),
        "shard": dg.MetadataValue.path(location),
    }


def markdown_table(rows: list[dict], columns: list[str], limit: int = 50) -> dg.MetadataValue:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows[:limit]:
        lines.append("| " + " | ".join(str(row.get(c, "")).replace("|", "\\|") for c in columns) + " |")
    if len(rows) > limit:
        lines.append(f"\n… and {len(rows) - limit} more")
    return dg.MetadataValue.md("\n".join(lines) if rows else "_none_")
