"""The DuckDB serving file, derived from the shards and replaced atomically.

``build_vector_db`` writes a complete new database under a temporary name and renames it over the
old one: readers that opened the old file keep reading it, new readers see the new one, and nobody
ever sees a half-built state. Deleting or damaging the file loses nothing: rebuild it from shards.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from mm_assets.store import tables
from mm_assets.store.catalog import VectorDBError, load_extensions, open_read_only
from mm_assets.store.layout import Layout
from mm_assets.store.tables import (
    CHUNK_FAILURES,
    CHUNK_FAILURES_SCHEMA,
    CHUNKS,
    CHUNKS_SCHEMA,
    EMBEDDINGS,
    MODALITY_CODES,
    RAW_FILES,
    RAW_FILES_SCHEMA,
    embedding_table_name,
)

# Bumped when the database layout changes (the vector_tables code version).
VECTOR_DB_VERSION = "2"


@dataclass(frozen=True)
class ServingSpec:
    """What a build serves besides the shards: which encoder keys are configured now (by name), the
    default one, and whether HNSW indexes are built. A change of any makes the database out of date."""

    current: dict[str, str]  # encoder name -> encoder key
    default_key: str
    hnsw: bool

    def as_json(self) -> str:
        return json.dumps({"current": self.current, "default_key": self.default_key, "hnsw": self.hnsw}, sort_keys=True)


def _write_serving_matrix(con: duckdb.DuckDBPyConnection, table: str, dim: int, serving: Path) -> Path:
    """The table's vectors as a float32 .npy in row order (memory-mapped by exact search: a matrix
    product is far faster than DuckDB's per-row cosine scan), plus each row's modality and chunk id."""
    result = con.execute(
        f"SELECT e.chunk_id, e.embedding, c.modality FROM {table} e JOIN chunks c USING (chunk_id) ORDER BY e.row"
    ).to_arrow_table()
    embeddings = result.column("embedding").combine_chunks()
    vectors = np.asarray(embeddings.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
    codes = np.asarray([MODALITY_CODES[m] for m in result.column("modality").to_pylist()], dtype=np.uint8)
    path = serving / f"{table}.npy"
    np.save(path, vectors)
    np.save(serving / f"{table}.modality.npy", codes)
    np.save(serving / f"{table}.ids.npy", np.asarray(result.column("chunk_id").to_pylist()))
    return path


def is_up_to_date(layout: Layout, spec: ServingSpec) -> bool:
    """Whether the database exists, opens, was built from exactly the shards now in the store and
    for these settings (False after a killed rebuild, new shards, or a new default encoder, so
    rerunning `mm-assets run` finishes the job)."""
    try:
        con = open_read_only(layout.db_path)
    except VectorDBError:
        return False
    try:
        built_from = {r[0] for r in con.execute("SELECT shard FROM build_inputs").fetchall()}
        built_for = con.execute("SELECT settings FROM build_settings").fetchone()
        matrices = [layout.home / m for (m,) in con.execute("SELECT matrix FROM encoders").fetchall()]
    except duckdb.Error:
        return False
    finally:
        con.close()
    serving = all(m.exists() and m.with_suffix(".ids.npy").exists() for m in matrices)
    return (
        serving and built_for is not None and built_for[0] == spec.as_json() and built_from == layout.store.all_shards()
    )


@contextmanager
def single_writer(layout: Layout):
    """Serialise rebuilds: each starts after the previous one, so the last rebuild sees every shard."""
    layout.home.mkdir(parents=True, exist_ok=True)
    with open(layout.writer_lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _remove_killed_builds(layout: Layout) -> None:
    """Databases a killed rebuild left half-written (builds run one at a time: under the writer lock,
    any other one is dead)."""
    for leftover in layout.db_path.parent.glob(f".{layout.db_path.stem}.*.building*"):
        leftover.unlink(missing_ok=True)


def _remove_old_serving_dirs(layout: Layout, keep: Path) -> None:
    """Keep this build's matrices and the previous build's (a reader may still be using it)."""
    builds = sorted((p for p in layout.serving_dir("").glob("*") if p.is_dir()), key=lambda p: int(p.name))
    for old in builds[:-2]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class BuildReport:
    tables: dict[str, int]  # table name -> rows
    hnsw_seconds: float
    seconds: float


def build_vector_db(layout: Layout, records: dict[str, dict], spec: ServingSpec, log=print) -> BuildReport:
    """Rebuild ``vectors.duckdb`` from every shard (one writer at a time: call it under ``single_writer``).

    ``records``: encoder key -> encoder record, for every key with shards (see
    encoders/identity.stored_records); keys not configured now are kept as their own tables (marked
    not current) so configurations can be compared.
    """
    start = time.perf_counter()
    _remove_killed_builds(layout)
    store = layout.store
    raw = store.list(store.shard_dir(RAW_FILES))
    chunk_shards = store.list(store.shard_dir(CHUNKS))
    if not raw or not chunk_shards:
        raise VectorDBError("nothing ingested yet: no raw_files/chunks shards under " + store.url)
    tmp = layout.db_path.with_name(f".{layout.db_path.stem}.{uuid.uuid4().hex[:8]}.building")
    serving = layout.serving_dir(f"{time.time_ns()}")
    serving.mkdir(parents=True)
    built: dict[str, int] = {}
    failure_shards = store.list(store.shard_dir(CHUNK_FAILURES))
    inputs = [*raw, *chunk_shards, *failure_shards]  # every shard this build reads, recorded for is_up_to_date
    hnsw_seconds = 0.0
    try:
        con = duckdb.connect(str(tmp))
        load_extensions(con)
        # Shards are scanned as Arrow datasets, so they may live on any filesystem fsspec reaches;
        # the declared schemas fill columns that older shards lack with NULL (renamed ones: tables.py).
        con.register("raw_shards", store.dataset(raw, tables.read_schema(RAW_FILES_SCHEMA, RAW_FILES)))
        con.register("chunk_shards", store.dataset(chunk_shards, tables.read_schema(CHUNKS_SCHEMA, CHUNKS)))
        con.execute(
            f"CREATE TABLE file_versions AS SELECT {tables.select_list(RAW_FILES_SCHEMA, RAW_FILES)} FROM raw_shards"
        )
        # A path's latest version wins (an edited file replaces its old content); a file id seen under
        # several paths (a rename or a copy) is served under its most recently ingested path.
        con.execute("""
            CREATE TABLE files AS
            WITH latest AS (SELECT path, arg_max(file_id, ingested_at) AS file_id,
                                   arg_max(status, ingested_at) AS status
                            FROM file_versions GROUP BY path)
            SELECT v.file_id, arg_max(v.path, v.ingested_at) AS path, any_value(v.kind) AS kind,
                   any_value(v.format) AS format, any_value(v.encoding) AS encoding, any_value(v.width) AS width,
                   any_value(v.height) AS height, any_value(v.pages) AS pages, any_value(v.duration) AS duration,
                   any_value(v.size) AS size, max(v.ingested_at) AS ingested_at,
                   arg_max(v.caption, v.ingested_at) AS caption, arg_max(v.label, v.ingested_at) AS label
            FROM file_versions v JOIN latest l ON v.path = l.path AND v.file_id = l.file_id
            WHERE l.status = 'ok' GROUP BY v.file_id""")
        # A path is quarantined while its latest version is (a fixed file leaves the table), or while
        # that version gave no chunks: every file ends either searchable or here, with its reason.
        con.register("failure_shards", store.dataset(failure_shards, CHUNK_FAILURES_SCHEMA))
        con.execute("""
            CREATE TABLE quarantine AS
            WITH latest AS (SELECT path, arg_max(file_id, ingested_at) AS file_id,
                                   arg_max(status, ingested_at) AS status, arg_max(reason, ingested_at) AS reason,
                                   arg_max(batch, ingested_at) AS batch, max(ingested_at) AS ingested_at
                            FROM file_versions GROUP BY path)
            SELECT path, reason, batch, ingested_at FROM latest WHERE status = 'quarantined'
            UNION ALL
            SELECT l.path, any_value(f.reason), any_value(f.batch), l.ingested_at
            FROM latest l JOIN failure_shards f ON f.path = l.path AND f.file_id = l.file_id
            WHERE l.status = 'ok' GROUP BY l.path, l.ingested_at""")
        # A file's chunks are those of the latest batch that ingested it: when only a file it uses
        # changed (a linked image, its subtitles), an older batch's chunks of the same file id are stale.
        # (Shards written before chunks recorded their batch match any batch.)
        con.execute(f"""
            CREATE TABLE chunks AS
            WITH file_batch AS (SELECT file_id, arg_max(batch, ingested_at) AS latest_batch FROM file_versions
                                WHERE status = 'ok' AND file_id IN (SELECT file_id FROM files) GROUP BY file_id)
            SELECT DISTINCT ON (chunk_id) {tables.select_list(CHUNKS_SCHEMA, CHUNKS, exclude=("media",))}
            FROM chunk_shards JOIN file_batch b USING (file_id)
            WHERE batch IS NULL OR batch = latest_batch ORDER BY chunk_id""")
        # Search looks results up by id: point lookups through these indexes, not scans.
        con.execute("CREATE UNIQUE INDEX chunks_by_id ON chunks (chunk_id)")
        con.execute("CREATE UNIQUE INDEX files_by_id ON files (file_id)")
        con.execute(tables.ENCODERS_DDL)
        for key, record in sorted(records.items()):
            shards = store.list(store.shard_dir(EMBEDDINGS, key))
            inputs += shards
            table, dim = embedding_table_name(key), int(record["embedding_dim"])
            con.register(f"{table}_shards", store.dataset(shards))
            # `row` numbers the vectors in chunk-id order: the row of the serving matrix below.
            con.execute(f"""
                CREATE TABLE {table} AS
                SELECT (row_number() OVER (ORDER BY chunk_id) - 1)::INTEGER AS row, chunk_id, embedding
                FROM (SELECT DISTINCT ON (chunk_id) chunk_id, embedding::FLOAT[{dim}] AS embedding
                      FROM {table}_shards WHERE chunk_id IN (SELECT chunk_id FROM chunks))
                ORDER BY chunk_id""")
            n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            built[table] = n
            matrix = _write_serving_matrix(con, table, dim, serving)
            if spec.hnsw and n:
                t0 = time.perf_counter()
                log(f"building HNSW index on {table} ({n:,} vectors)")
                con.execute("SET hnsw_enable_experimental_persistence = true")
                con.execute(f"CREATE INDEX {table}_hnsw ON {table} USING HNSW (embedding) WITH (metric = 'cosine')")
                hnsw_seconds += time.perf_counter() - t0
            con.execute(
                "INSERT INTO encoders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    key,
                    record["encoder"],
                    record["fingerprint"],
                    table,
                    record["model_id"],
                    record["revision"],
                    dim,
                    record["dtype"],
                    spec.current.get(record["encoder"]) == key,
                    key == spec.default_key,
                    n,
                    str(matrix.relative_to(layout.home)),
                    json.dumps(record, sort_keys=True),
                ],
            )
        # What this build read and was built for: a later run compares them (see is_up_to_date).
        con.execute(tables.BUILD_INPUTS_DDL)
        con.executemany("INSERT INTO build_inputs VALUES (?)", [[key] for key in inputs])
        con.execute(tables.BUILD_SETTINGS_DDL)
        con.execute("INSERT INTO build_settings VALUES (?)", [spec.as_json()])
        for name in ("files", "chunks", "quarantine", "file_versions"):
            built[name] = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        con.execute("CHECKPOINT")
        con.close()
        os.replace(tmp, layout.db_path)
        _remove_old_serving_dirs(layout, keep=serving)
    except BaseException:
        shutil.rmtree(serving, ignore_errors=True)
        raise
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
    return BuildReport(built, hnsw_seconds, time.perf_counter() - start)
