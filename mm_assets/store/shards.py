"""Immutable Parquet shards under ``<home>``: written to a temporary name, then renamed into place.

Readers only ever list ``*.parquet``, so a half-written shard (``.*.tmp``) is never read, and a
killed writer leaves nothing but a temporary file that the next write of that shard replaces.
"""

from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, payload: object) -> None:
    atomic_write_bytes(path, json.dumps(payload, indent=1, sort_keys=True, default=str).encode())


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def write_table(path: Path, table: pa.Table) -> None:
    with shard_writer(path, table.schema) as write:
        write(table)


@contextmanager
def shard_writer(path: Path, schema: pa.Schema):
    """Stream record batches into one shard; it appears under its name only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    writer = pq.ParquetWriter(tmp, schema)
    try:
        yield writer.write_table
        writer.close()
        os.replace(tmp, path)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(path, columns=columns)


def list_shards(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))


def read_all_shards(directory: Path, columns: list[str] | None = None) -> pa.Table | None:
    shards = list_shards(directory)
    return pa.concat_tables([read_table(p, columns) for p in shards], promote_options="default") if shards else None


def existing_ids(directory: Path, column: str, exclude: Path | None = None) -> set[str]:
    """Ids already written by other shards of a folder (content addressing: never redo them)."""
    ids: set[str] = set()
    for shard in list_shards(directory):
        if shard != exclude:
            ids.update(read_table(shard, [column]).column(column).to_pylist())
    return ids
