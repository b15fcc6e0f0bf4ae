"""The DuckDB serving file, derived from the shards and replaced atomically.

``build_vector_db`` writes a complete new database under a temporary name and renames it over the
old one: readers that opened the old file keep reading it, new readers see the new one, and nobody
ever sees a half-built state. Deleting or damaging the file loses nothing: rebuild it from shards.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb
import duckdb_extension_vss
import numpy as np

from mm_assets.chunking.rows import CHUNKS_SCHEMA
from mm_assets.ingest.files import RAW_FILES_SCHEMA
from mm_assets.store.layout import Layout


class VectorDBError(RuntimeError):
    pass


def damaged(what: str, exc: BaseException) -> VectorDBError:
    """The error for any damaged part of the serving state: it is derived, so say how to rebuild it."""
    return VectorDBError(
        f"{what} is damaged or incomplete ({exc}). It is derived data: rematerialize vector_tables "
        "(`mm-assets run` or the Dagster UI) to rebuild it from the shards."
    )


def _extension_file(package) -> str:
    # The pip packages ship the binary for the pinned duckdb version; nothing is downloaded.
    return str(next(Path(package.__path__[0]).rglob("*.duckdb_extension")))


def load_extensions(con: duckdb.DuckDBPyConnection) -> None:
    """vss: HNSW indexes (a database holding one cannot even be opened without it)."""
    con.execute(f"LOAD '{_extension_file(duckdb_extension_vss)}'")


def open_read_only(db_path: Path) -> duckdb.DuckDBPyConnection:
    if not db_path.exists():
        raise VectorDBError(
            f"no vector database at {db_path}. Build it with `mm-assets run DIR` or by materializing "
            "the vector_tables asset."
        )
    try:
        con = duckdb.connect(str(db_path), read_only=True)
        load_extensions(con)
        con.execute("SELECT count(*) FROM encoders").fetchone()
        return con
    except duckdb.Error as exc:
        raise damaged(f"the vector database {db_path}", exc) from None


def embedding_table(encoder_key: str) -> str:
    return f"emb_{encoder_key}"


MODALITY_CODES = {"image": 0, "text": 1, "audio": 2}


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


def is_up_to_date(layout: Layout) -> bool:
    """Whether the database exists, opens, and was built from exactly the shards now on disk (False
    after a killed rebuild or new shards, so rerunning `mm-assets run` finishes the job)."""
    try:
        con = open_read_only(layout.db_path)
    except VectorDBError:
        return False
    try:
        built_from = {r[0] for r in con.execute("SELECT shard FROM build_inputs").fetchall()}
    except duckdb.Error:
        return False
    finally:
        con.close()
    return built_from == layout.store.all_shards()


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


def build_vector_db(layout: Layout, current: dict[str, str], default_key: str, hnsw: bool, log=print) -> BuildReport:
    """Rebuild ``vectors.duckdb`` from every shard.

    ``current``: encoder name -> key of the configured encoders; older keys found in the shards
    are kept as their own tables (marked not current) so configurations can be compared.
    """
    start = time.perf_counter()
    store = layout.store
    raw = store.list(store.shard_dir("raw_files"))
    chunk_shards = store.list(store.shard_dir("chunks"))
    if not raw or not chunk_shards:
        raise VectorDBError("nothing ingested yet: no raw_files/chunks shards under " + store.url)
    tmp = layout.db_path.with_name(f".{layout.db_path.stem}.{uuid.uuid4().hex[:8]}.building")
    serving = layout.serving_dir(f"{time.time_ns()}")
    serving.mkdir(parents=True)
    tables: dict[str, int] = {}
    inputs = [*raw, *chunk_shards]  # every shard this build reads, recorded for is_up_to_date
    hnsw_seconds = 0.0
    try:
        con = duckdb.connect(str(tmp))
        load_extensions(con)
        # Shards are scanned as Arrow datasets, so they may live on any filesystem fsspec reaches;
        # the declared schemas fill columns that older shards lack with NULL.
        con.register("raw_shards", store.dataset(raw, RAW_FILES_SCHEMA))
        con.register("chunk_shards", store.dataset(chunk_shards, CHUNKS_SCHEMA))
        con.execute("CREATE TABLE file_versions AS SELECT * FROM raw_shards")
        # A path's latest version wins (an edited file replaces its old content); a file id seen under
        # several paths (a rename or a copy) is served under its most recently ingested path.
        con.execute("""
            CREATE TABLE files AS
            WITH latest AS (SELECT path, arg_max(file_id, ingested_at) AS file_id,
                                   arg_max(status, ingested_at) AS status
                            FROM file_versions GROUP BY path)
            SELECT v.file_id, arg_max(v.path, v.ingested_at) AS path, any_value(v.modality) AS modality,
                   any_value(v.format) AS format, any_value(v.encoding) AS encoding, any_value(v.width) AS width,
                   any_value(v.height) AS height, any_value(v.pages) AS pages, any_value(v.duration) AS duration,
                   any_value(v.size) AS size, max(v.ingested_at) AS ingested_at,
                   arg_max(v.caption, v.ingested_at) AS caption, arg_max(v.label, v.ingested_at) AS label
            FROM file_versions v JOIN latest l ON v.path = l.path AND v.file_id = l.file_id
            WHERE l.status = 'ok' GROUP BY v.file_id""")
        con.execute("""
            CREATE TABLE quarantine AS
            SELECT path, reason, batch, ingested_at FROM file_versions WHERE status = 'quarantined'""")
        con.execute("""
            CREATE TABLE chunks AS SELECT DISTINCT ON (chunk_id) * EXCLUDE (media) FROM chunk_shards
            WHERE file_id IN (SELECT file_id FROM files) ORDER BY chunk_id""")
        # Search looks results up by id: point lookups through these indexes, not scans.
        con.execute("CREATE UNIQUE INDEX chunks_by_id ON chunks (chunk_id)")
        con.execute("CREATE UNIQUE INDEX files_by_id ON files (file_id)")
        con.execute("""
            CREATE TABLE encoders (key VARCHAR PRIMARY KEY, name VARCHAR, fingerprint VARCHAR, table_name VARCHAR,
                model_id VARCHAR, revision VARCHAR, embedding_dim INTEGER, dtype VARCHAR, is_current BOOLEAN,
                is_default BOOLEAN, n_vectors BIGINT, matrix VARCHAR, metadata JSON)""")
        for key in store.subdirectories(store.shard_dir("embeddings")):
            shards = store.list(store.shard_dir("embeddings", key))
            if not shards or not store.exists(store.encoder_record(key)):
                continue
            record = store.read_json(store.encoder_record(key))
            inputs += shards
            table, dim = embedding_table(key), int(record["embedding_dim"])
            con.register(f"{table}_shards", store.dataset(shards))
            # `row` numbers the vectors in chunk-id order: the row of the serving matrix below.
            con.execute(f"""
                CREATE TABLE {table} AS
                SELECT (row_number() OVER (ORDER BY chunk_id) - 1)::INTEGER AS row, chunk_id, embedding
                FROM (SELECT DISTINCT ON (chunk_id) chunk_id, embedding::FLOAT[{dim}] AS embedding
                      FROM {table}_shards WHERE chunk_id IN (SELECT chunk_id FROM chunks))
                ORDER BY chunk_id""")
            n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            tables[table] = n
            matrix = _write_serving_matrix(con, table, dim, serving)
            if hnsw and n:
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
                    current.get(record["encoder"]) == key,
                    key == default_key,
                    n,
                    str(matrix.relative_to(layout.home)),
                    json.dumps(record, sort_keys=True),
                ],
            )
        # What this build read: a later run compares it with the shards on disk (see is_up_to_date).
        con.execute("CREATE TABLE build_inputs (shard VARCHAR)")
        con.executemany("INSERT INTO build_inputs VALUES (?)", [[key] for key in inputs])
        for name in ("files", "chunks", "quarantine", "file_versions"):
            tables[name] = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
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
    return BuildReport(tables, hnsw_seconds, time.perf_counter() - start)
