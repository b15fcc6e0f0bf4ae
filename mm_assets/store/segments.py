"""The serving state: immutable segments, a list of deleted rows, and one pointer naming them.

A DuckDB file cannot be read by one process while another writes it, so the serving state is never
written in place. Each update writes a new **segment** (a small DuckDB file with the rows the batch
added, and their serving matrices) and a new **dead list** (rows of older segments that the batch
deleted or replaced), then publishes a **generation**: ``current.json``, replaced atomically, naming
the segments and the dead list. Readers attach the segments read-only behind views that leave the dead
rows out, so every query sees one whole generation; a crash before the pointer moves leaves the previous
generation answering, and files no generation names are removed by the next writer.

    <home>/vectors/current.json                      the generation being served
    <home>/vectors/current.sql                       the same for any DuckDB client (`duckdb -init` it)
    <home>/vectors/segments/<segment>.duckdb         rows: file_versions, paths, files, chunks, quarantine, emb_*,
                                                     and the BM25 index of its text chunks (fts_main_chunks)
    <home>/vectors/segments/<segment>/<table>.npy    vectors (and .ids.npy, .modality.npy) for exact search,
                                                     .int8.npy/.int8scale.npy/.bits.npy: compact copies
    <home>/vectors/dead/<generation>.parquet         (table, segment, rowid) of rows no longer live

Compaction (vector_db.compact) writes the live rows of many segments into one and empties the dead list.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from mm_assets.store.duck import VectorDBError, damaged, load_vss_sql
from mm_assets.store.layout import segment_path, write_text_atomically
from mm_assets.store.matrices import check_matrices
from mm_assets.store.tables import ENCODERS_DDL

# Bumped when the layout of segments or generations changes (the vector_tables code version).
SERVING_VERSION = "4"
CURRENT = "current.json"
CURRENT_SQL = "current.sql"  # the same generation for any DuckDB client
# The tables of every segment (besides one emb_* table per encoder, ordered by chunk_id), with the
# column their rows are ordered by (file_versions keeps the order rows were ingested in).
SEGMENT_TABLES = {
    "file_versions": None,
    "paths": "path",
    "files": "file_id",
    "chunks": "chunk_id",
    "quarantine": "path",
}


@dataclass(frozen=True)
class ServingSpec:
    """What a build serves besides the shards: which encoder keys are configured now (by name), the
    default one, and whether HNSW indexes are built. A change of any makes the database out of date."""

    current: dict[str, str]  # encoder name -> encoder key
    default_key: str
    hnsw: bool

    def as_json(self) -> str:
        return json.dumps({"current": self.current, "default_key": self.default_key, "hnsw": self.hnsw}, sort_keys=True)


@dataclass(frozen=True)
class Segment:
    name: str
    rows: dict[str, int]  # table -> rows written (live or not)
    hnsw: tuple[str, ...] = ()  # embedding tables with an HNSW index in this segment
    # Each file's (size, mtime) when written: a file changed since (truncated, overwritten) is damage.
    stamps: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Generation:
    number: int
    segments: tuple[Segment, ...]
    dead: str | None  # file name under dead/, None when nothing is dead
    dead_rows: int
    inputs: dict[str, float]  # every shard applied -> its modification time
    settings: str  # the ServingSpec it was built for, as JSON
    encoders: tuple[dict, ...] = ()  # rows of the encoders table
    version: str = SERVING_VERSION
    live: dict[str, int] = field(default_factory=dict)  # table -> live rows

    @classmethod
    def from_json(cls, data: dict) -> Generation:
        segments = tuple(
            Segment(s["name"], s["rows"], tuple(s["hnsw"]), {k: tuple(v) for k, v in s["stamps"].items()})
            for s in data["segments"]
        )
        return cls(**{**data, "segments": segments, "encoders": tuple(data["encoders"])})

    def files(self) -> set[str]:
        """The files under the serving folder this generation reads."""
        names = {f"segments/{s.name}.duckdb" for s in self.segments} | {f"segments/{s.name}" for s in self.segments}
        return names | ({f"dead/{self.dead}"} if self.dead else set())


def read_generation(root: Path) -> Generation:
    path = root / CURRENT
    if not path.exists():
        raise VectorDBError(
            f"nothing indexed yet: no vector database at {root}; build it with `mm-assets run DIR` (or "
            "`mm-assets demo`), or by materializing the vector_tables asset"
        )
    try:
        generation = Generation.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise damaged(f"the vector database pointer {path}", exc) from None
    return generation


def publish(root: Path, generation: Generation) -> None:
    """Make ``generation`` the one served: written aside, made durable, renamed over the pointer."""
    tmp = root / f".{CURRENT}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "w") as fh:
        json.dump(asdict(generation), fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / CURRENT)
    directory = os.open(root, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    write_text_atomically(root / CURRENT_SQL, sql_file(root, generation))


def sql_file(root: Path, generation: Generation) -> str:
    """The generation for DuckDB's own clients: `duckdb -init <vectors>/current.sql` (or `.read` it),
    then query ``files``, ``chunks``, ``emb_<encoder key>`` (``array_cosine_similarity`` over
    ``embedding``) and ``encoders`` as search sees them."""
    header = (
        f"-- mm_assets generation {generation.number}, written when it was published: its live rows as views\n"
        "-- (the next publish replaces this file; the files it names stay readable while a session has them open)\n"
    )
    return header + "".join(f"{statement};\n" for statement in generation_sql(root, generation))


def remove_unreferenced(root: Path, generation: Generation | None) -> list[str]:
    """Delete what no generation names: segments of a killed update, retired segments and dead lists
    (readers still using them keep their open files: unlinking does not take them away)."""
    keep = generation.files() if generation else set()
    removed = []
    for folder in ("segments", "dead"):
        for path in sorted((root / folder).glob("*")) if (root / folder).exists() else []:
            relative = f"{folder}/{path.name}"
            if relative in keep:
                continue
            if path.is_dir():
                for inner in path.iterdir():
                    inner.unlink()
                path.rmdir()
            else:
                path.unlink()
            removed.append(relative)
    for leftover in root.glob(f".{CURRENT}.*.tmp"):
        leftover.unlink(missing_ok=True)
    return removed


def embedding_tables(generation: Generation) -> list[str]:
    return [e["table_name"] for e in generation.encoders]


def attach(con: duckdb.DuckDBPyConnection, root: Path, generation: Generation) -> None:
    """Make ``con`` see the generation: each segment attached read-only, and per table a view of its
    live rows (``<table>``), the same with where each row lives (``<table>_located``: _seg, _rid),
    and every row stored, dead or alive (``<table>_stored``)."""
    for statement in _dead_list_sql(root, generation):
        con.execute(statement)
    dead_counts = con.execute("SELECT tbl, seg, count(*) FROM _dead GROUP BY ALL").fetchall()
    for statement in _views_sql(root, generation, {(t, s): n for t, s, n in dead_counts}):
        con.execute(statement)


def generation_sql(root: Path, generation: Generation) -> list[str]:
    """The statements that open the generation in any DuckDB session: what ``attach`` runs, as each
    publish writes them to ``current.sql`` for DuckDB's own clients."""
    if generation.dead:
        with duckdb.connect(":memory:") as con:
            dead_counts = con.execute(
                "SELECT tbl, seg, count(*) FROM read_parquet(?) GROUP BY ALL", [str(root / "dead" / generation.dead)]
            ).fetchall()
    else:
        dead_counts = []
    return [*_dead_list_sql(root, generation), *_views_sql(root, generation, {(t, s): n for t, s, n in dead_counts})]


def _dead_list_sql(root: Path, generation: Generation) -> list[str]:
    """vss where a segment has an HNSW index, and the dead list as the temp table ``_dead``."""
    statements = [load_vss_sql()] if any(segment.hnsw for segment in generation.segments) else []
    if generation.dead:
        dead = _literal(str(root / "dead" / generation.dead))
        statements.append(f"CREATE OR REPLACE TEMP TABLE _dead AS SELECT * FROM read_parquet({dead})")
    else:
        statements.append("CREATE OR REPLACE TEMP TABLE _dead (tbl VARCHAR, seg VARCHAR, rid BIGINT)")
    return statements


def _views_sql(root: Path, generation: Generation, dead_counts: dict[tuple[str, str], int]) -> list[str]:
    """The segments attached and the views over them; ``dead_counts``: (table, segment) -> its dead
    rows (a view filters only the parts that have any)."""
    statements = []
    for i, segment in enumerate(generation.segments):
        statements.append(f"ATTACH {_literal(str(segment_path(root, segment.name)))} AS s{i} (READ_ONLY)")
    for table in [*SEGMENT_TABLES, *embedding_tables(generation)]:
        stored, live = [], []
        for i, segment in enumerate(generation.segments):
            if table not in segment.rows:
                continue
            branch = f"SELECT *, '{segment.name}' AS _seg, rowid AS _rid FROM s{i}.{table}"
            stored.append(branch)
            if dead_counts.get((table, segment.name)):
                branch += (
                    f" WHERE rowid NOT IN (SELECT rid FROM _dead WHERE tbl = '{table}' AND seg = '{segment.name}')"
                )
            live.append(branch)
        statements += [
            f"CREATE OR REPLACE TEMP VIEW {table}_stored AS {' UNION ALL BY NAME '.join(stored)}",
            f"CREATE OR REPLACE TEMP VIEW {table}_located AS {' UNION ALL BY NAME '.join(live)}",
            f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT * EXCLUDE (_seg, _rid) FROM {table}_located",
        ]
    statements.append(ENCODERS_DDL.replace("CREATE TABLE", "CREATE OR REPLACE TEMP TABLE"))
    for e in generation.encoders:
        values = ", ".join(_literal(v) for v in e.values())
        statements.append(f"INSERT INTO encoders ({', '.join(e)}) VALUES ({values})")
    return statements


def _literal(value) -> str:
    """A value as a SQL literal (the generation's own names, paths and encoder rows)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def open_generation(root: Path) -> tuple[duckdb.DuckDBPyConnection, Generation]:
    """A read-only view of the generation being served."""
    generation = read_generation(root)
    con = duckdb.connect(":memory:")
    try:
        attach(con, root, generation)
    except (duckdb.Error, OSError) as exc:
        con.close()
        raise damaged(f"the vector database {root}", exc) from None
    return con, generation


def open_read_only(root: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the generation being served."""
    return open_generation(root)[0]


def stamps_of(folder: Path, names: list[Path]) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in names}


def check_generation(root: Path, generation: Generation) -> None:
    """VectorDBError if a file of the generation is missing or damaged: every file is as it was written
    (size and time), every segment opens and holds its rows, every serving matrix has them (reads
    metadata and headers, not data: cheap at any size)."""
    con = duckdb.connect(":memory:")
    try:
        for segment in generation.segments:
            if stamps_of(root, [root / name for name in segment.stamps]) != segment.stamps:
                raise VectorDBError(f"files of segment {segment.name} changed since they were written")
        attach(con, root, generation)
        for i, segment in enumerate(generation.segments):
            for table, rows in segment.rows.items():
                if con.execute(f"SELECT count(*) FROM s{i}.{table}").fetchone()[0] != rows:
                    raise VectorDBError(f"segment {segment.name}: {table} does not hold its {rows} rows")
                if table.startswith("emb_"):
                    check_matrices(root, segment.name, table, rows)
    except (duckdb.Error, OSError, ValueError) as exc:
        raise damaged(f"the vector database {root}", exc) from None
    finally:
        con.close()


def dead_mask(con: duckdb.DuckDBPyConnection, table: str, segment: Segment) -> np.ndarray:
    """Per row of a segment's embedding table: True where the row is no longer live."""
    mask = np.zeros(segment.rows.get(table, 0), dtype=bool)
    rows = con.execute("SELECT rid FROM _dead WHERE tbl = ? AND seg = ?", [table, segment.name]).fetchnumpy()["rid"]
    mask[rows.astype(np.int64)] = True
    return mask
