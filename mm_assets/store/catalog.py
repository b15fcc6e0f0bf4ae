"""What the vector database holds, read back: its encoder tables and which one a query uses, chunk and
file details by id, counts and the quarantine. Used by search, status, evaluation and the
vector_tables asset, so each question is asked in one way. Opening is read-only: a reader never
blocks the writer (which publishes whole generations of immutable segments, see segments.py) nor sees
a half-applied batch."""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb

from mm_assets.store.duck import UnknownEncoder, VectorDBError
from mm_assets.store.tables import CHUNK_DETAIL_COLUMNS, CHUNK_PLACE_COLUMNS


@dataclass(frozen=True)
class EncoderTable:
    """One encoder configuration's vectors in the database, with the record of the model that wrote them."""

    encoder_key: str
    name: str
    table_name: str
    dim: int
    has_hnsw: bool  # built with HNSW indexes (on its segments of at least vector_db.HNSW_MIN_ROWS rows)
    is_current: bool  # the configured encoder of that name (older configurations stay for comparison)
    is_default: bool  # what a query without --encoder uses, as configured when the database was built
    n_vectors: int
    metadata: dict  # the encoder record (mm_assets/encoders/identity.py)

    @classmethod
    def from_row(cls, row: dict) -> EncoderTable:
        """From a row of the encoders table as a generation records it (segments.Generation.encoders)."""
        return cls(
            row["encoder_key"],
            row["name"],
            row["table_name"],
            row["embedding_dim"],
            row["hnsw"],
            row["is_current"],
            row["is_default"],
            row["n_vectors"],
            json.loads(row["metadata"]),
        )

    def summary(self) -> dict:
        """The row shown by `mm-assets status` and the vector_tables asset."""
        m = self.metadata
        return {
            "table": self.table_name,
            "encoder": self.name,
            "model": m["model_id"],
            "revision": m["revision"],
            "dim": self.dim,
            "current": self.is_current,
            "default": self.is_default,
            "vectors": self.n_vectors,
        }


def list_encoder_tables(con: duckdb.DuckDBPyConnection) -> list[EncoderTable]:
    """The default table first, then current ones, then by name."""
    rows = con.execute("""
        SELECT e.encoder_key, e.name, e.table_name, e.embedding_dim, e.hnsw, e.is_current, e.is_default,
               e.n_vectors, e.metadata
        FROM encoders e ORDER BY e.is_default DESC, e.is_current DESC, e.name, e.encoder_key""").fetchall()
    return [EncoderTable(*r[:8], json.loads(r[8])) for r in rows]


def choose_encoder_table(
    tables: list[EncoderTable], encoder: str | None = None, default_key: str | None = None
) -> EncoderTable:
    """``encoder``: a name (its current table), an encoder key or a table name. Without it, the
    configured default encoder's key; without that, the table the build marked as the default."""
    if not tables:
        raise VectorDBError("the vector database has no embedding tables yet")
    wanted = encoder or default_key
    if wanted is None:
        return tables[0]
    for t in tables:
        if wanted in (t.encoder_key, t.table_name):
            return t
    named = [t for t in tables if t.name == wanted]
    if named:
        return named[0]  # sorted current-first
    choices = ", ".join(f"{t.name} ({t.encoder_key})" for t in tables)
    if encoder is None:
        raise VectorDBError(
            f"no vectors yet for the configured default encoder ({default_key}); materialize its embeddings, "
            f"or pick one with --encoder: {choices}"
        )
    raise UnknownEncoder(f"no embedding table for encoder {encoder!r}; available: {choices}")


def served_columns(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, list[tuple[str, str]]]:
    """(column, DuckDB type) of each served table."""
    return {t: [(row[0], row[1]) for row in con.execute(f"DESCRIBE {t}").fetchall()] for t in tables}


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("files", "chunks", "quarantine")}


def quarantined_files(con: duckdb.DuckDBPyConnection) -> list[dict]:
    rows = con.execute("SELECT path, reason, batch FROM quarantine ORDER BY path").fetchall()
    return [{"path": path, "reason": reason, "batch": batch} for path, reason, batch in rows]


def select_by_id(con: duckdb.DuckDBPyConnection, table: str, columns: tuple[str, ...], ids: list[str]) -> list[dict]:
    """Rows by their id (the first column) as dicts; a literal IN list, so the id index is used."""
    if not ids:
        return []
    id_column = columns[0]
    rows = con.execute(
        f"SELECT {', '.join(columns)} FROM {table} WHERE {id_column} IN ({', '.join('?' * len(ids))})", ids
    ).fetchall()
    return [dict(zip(columns, r)) for r in rows]


def chunk_details(con: duckdb.DuckDBPyConnection, chunk_ids: list[str]) -> dict[str, dict]:
    """Path, modality, text, heading and place in the file per chunk id, and for a caption or alt text
    the image chunk it describes (a hit on its words shows that figure too)."""
    chunks = select_by_id(con, "chunks", CHUNK_DETAIL_COLUMNS, chunk_ids)
    files = select_by_id(con, "files", ("file_id", "path"), sorted({c["file_id"] for c in chunks}))
    paths = {f["file_id"]: f["path"] for f in files}
    linked = sorted({c["linked_chunk_id"] for c in chunks if c["linked_chunk_id"]})
    described = {
        d["chunk_id"]: d for d in select_by_id(con, "chunks", ("chunk_id", "modality", *CHUNK_PLACE_COLUMNS), linked)
    }
    out = {}
    for c in chunks:
        chunk_id, link = c.pop("chunk_id"), c.pop("linked_chunk_id")
        out[chunk_id] = {**c, "path": paths[c["file_id"]], "describes": described.get(link)}
    return out


def chunks_around(con: duckdb.DuckDBPyConnection, places: list[tuple[str, int]], width: int) -> list[dict]:
    """The chunks within ``width`` positions of each (file id, position), in reading order."""
    if not places:
        return []
    windows = " OR ".join("(file_id = ? AND position BETWEEN ? AND ?)" for _ in places)
    params = [v for file_id, position in places for v in (file_id, position - width, position + width)]
    rows = con.execute(
        f"SELECT {', '.join(CHUNK_DETAIL_COLUMNS)} FROM chunks WHERE {windows} ORDER BY position", params
    )
    return [dict(zip(CHUNK_DETAIL_COLUMNS, r)) for r in rows.fetchall()]


def media_chunk(con: duckdb.DuckDBPyConnection, chunk_id: str) -> dict | None:
    """A chunk with what rendering its media needs: its file's path, kind, size, and the batch that
    ingested it there (whose source folders bound what the file may refer to)."""
    columns = ("chunk_id", "file_id", "modality", "role", "text", "page", "bbox", "t_start", "t_end")
    row = con.execute(
        f"""SELECT {", ".join(f"c.{c}" for c in columns)}, f.path, f.kind, f.size, v.batch
            FROM chunks c JOIN files f USING (file_id)
            JOIN file_versions v ON v.file_id = f.file_id AND v.path = f.path AND v.ingested_at = f.ingested_at
            WHERE c.chunk_id = ? LIMIT 1""",
        [chunk_id],
    ).fetchone()
    return dict(zip((*columns, "path", "kind", "size", "batch"), row)) if row else None


def chunk_lineage(con: duckdb.DuckDBPyConnection, chunk_id: str) -> dict | None:
    """Where a chunk came from: its file (path, id, kind, size), the batch and time its file was last
    ingested under that path."""
    row = con.execute(
        """SELECT c.chunk_id, c.role, c.position, c.page, c.t_start, c.t_end, f.file_id, f.path, f.kind, f.size,
                  v.batch, v.ingested_at
           FROM chunks c JOIN files f USING (file_id)
           LEFT JOIN file_versions v ON v.file_id = f.file_id AND v.path = f.path AND v.ingested_at = f.ingested_at
           WHERE c.chunk_id = ? LIMIT 1""",
        [chunk_id],
    ).fetchone()
    names = ("chunk_id", "role", "position", "page", "t_start", "t_end", "file_id", "path", "kind", "size")
    return dict(zip((*names, "batch", "ingested_at"), row)) if row else None
