"""Immutable files (Parquet shards, batch manifests, encoder records) under one root: a local folder
or any fsspec URL (``s3://bucket/prefix``, ``gs://…``, ``file:///…``), so many processes or machines
can write them at once.

Every write goes to a temporary name (``.<name>.<random>.tmp``) and is moved into place when
complete. Readers only list names that do not start with a dot, so a half-written file is never
read, and a killed writer leaves nothing but a temporary file (``remove_stale_temporaries``).
On object storage an object only appears when its upload completes, which gives the same guarantee.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem


class ShardStore:
    """Keys are relative POSIX paths such as ``shards/chunks/<batch>.parquet``."""

    def __init__(self, url: str | Path):
        self.url = str(url).rstrip("/")
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self.root = root.rstrip("/")
        self.is_local = isinstance(self.fs, LocalFileSystem)

    # --- where things are ---------------------------------------------------------------------

    @staticmethod
    def manifest(batch: str) -> str:
        return f"manifests/{batch}.json"

    @staticmethod
    def shard_dir(asset: str, encoder_key: str | None = None) -> str:
        return f"shards/{asset}/{encoder_key}" if encoder_key else f"shards/{asset}"

    def shard(self, asset: str, batch: str, encoder_key: str | None = None) -> str:
        return f"{self.shard_dir(asset, encoder_key)}/{batch}.parquet"

    SEEN_INDEX = "state/seen.parquet"  # what discovery has batched already: path -> (size, mtime)
    WRITTEN_DIRS = ("manifests", "shards", "state")  # everything this store writes lives below these

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def uri(self, key: str) -> str:
        """The key as a user would paste it (a local path, or the URL on object storage)."""
        return self.path(key) if self.is_local else f"{self.url}/{key}"

    def _key(self, path: str) -> str:
        return path[len(self.root) + 1 :]

    # --- writing ------------------------------------------------------------------------------

    def _tmp(self, key: str) -> str:
        directory, _, name = self.path(key).rpartition("/")
        # The writer's host and pid are in the name: a dead writer's temporary is known at once.
        return f"{directory}/.{name}.{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"

    @contextmanager
    def _atomic(self, key: str):
        """An open binary file that appears under ``key`` only if the block succeeds."""
        final, tmp = self.path(key), self._tmp(key)
        self.fs.makedirs(final.rpartition("/")[0], exist_ok=True)
        try:
            with self.fs.open(tmp, "wb") as fh:
                yield fh
                if self.is_local:  # durable before it becomes visible
                    fh.flush()
                    os.fsync(fh.fileno())
            self.fs.mv(tmp, final)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise

    @contextmanager
    def writer(self, key: str, schema: pa.Schema):
        """Stream record batches into one shard; it appears under its name only if the block succeeds."""
        with self._atomic(key) as fh:
            writer = pq.ParquetWriter(fh, schema)
            try:
                yield writer.write_table
            finally:
                writer.close()

    def write_table(self, key: str, table: pa.Table) -> None:
        with self.writer(key, table.schema) as write:
            write(table)

    def write_json(self, key: str, payload: object) -> None:
        with self._atomic(key) as fh:
            fh.write(json.dumps(payload, indent=1, sort_keys=True, default=str).encode())

    # --- reading ------------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def read_json(self, key: str) -> dict:
        with self.fs.open(self.path(key), "rb") as fh:
            return json.loads(fh.read())

    def read_table(self, key: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.path(key), columns=columns, filesystem=self.fs)

    def list(self, directory: str, suffix: str = ".parquet") -> list[str]:
        """Complete files directly in ``directory`` (never temporaries), as sorted keys."""
        try:
            names = self.fs.ls(self.path(directory), detail=False)
        except FileNotFoundError:
            return []
        return sorted(self._key(p.rstrip("/")) for p in names if _is_complete(p.rstrip("/"), suffix))

    def subdirectories(self, directory: str) -> list[str]:
        try:
            entries = self.fs.ls(self.path(directory), detail=True)
        except FileNotFoundError:
            return []
        return sorted(e["name"].rstrip("/").rpartition("/")[2] for e in entries if e["type"] == "directory")

    def all_shards(self) -> dict[str, str]:
        """Every complete shard of every asset, with its modification time (a shard rewritten under
        the same name, by a rematerialization, is a different input)."""
        if not self.exists("shards"):
            return {}
        found = self.fs.find(self.path("shards"), detail=True)
        return {
            self._key(p): str(info.get("mtime", info.get("LastModified", info.get("size"))))
            for p, info in found.items()
            if _is_complete(p, ".parquet")
        }

    def read_all(self, directory: str, columns: list[str] | None = None) -> pa.Table | None:
        keys = self.list(directory)
        if not keys:
            return None
        return pa.concat_tables([self.read_table(k, columns) for k in keys], promote_options="default")

    def dataset(self, keys: list[str], schema: pa.Schema | None = None) -> ds.Dataset:
        """Shards as one lazily scanned dataset (DuckDB streams it without reading it all first)."""
        return ds.dataset([self.path(k) for k in keys], schema=schema, format="parquet", filesystem=self.fs)

    # --- housekeeping -------------------------------------------------------------------------

    def remove_stale_temporaries(self, older_than_seconds: float = 6 * 3600) -> list[str]:
        """Delete temporaries left by killed writers: at once when the writer was a process of this
        host that no longer exists; otherwise (another machine) when untouched for hours, as a live
        writer keeps writing its temporary."""
        removed = []
        now = time.time()
        for directory in self.WRITTEN_DIRS:
            if not self.exists(directory):
                continue
            for path in self.fs.find(self.path(directory)):
                name = path.rpartition("/")[2]
                if name.startswith(".") and name.endswith(".tmp"):
                    if _writer_is_dead(name) or now - self.fs.modified(path).timestamp() > older_than_seconds:
                        self.fs.rm(path)
                        removed.append(self._key(path))
        return removed


_HOST = socket.gethostname().replace(".", "_").replace("-", "_")


def _writer_is_dead(temporary: str) -> bool:
    """Whether a temporary's writer was a process of this host that has exited."""
    host, _, pid = temporary.rsplit(".", 2)[-2].rpartition("-")[0].rpartition("-")
    if host != _HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _is_complete(path: str, suffix: str) -> bool:
    """A finished file: the wanted suffix, and not a writer's dot-named temporary."""
    return path.endswith(suffix) and not path.rpartition("/")[2].startswith(".")
