"""What every reader and writer of the serving state shares: its errors, and DuckDB's extensions
loaded from the pinned pip packages (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import duckdb_extension_fts
import duckdb_extension_vss


class VectorDBError(RuntimeError):
    pass


class UnknownEncoder(VectorDBError):
    """A query named an encoder the database has no table for."""


def damaged(what: str, exc: BaseException | str) -> VectorDBError:
    """The error for any damaged part of the serving state: it is derived, so say how to rebuild it."""
    return VectorDBError(
        f"{what} is damaged or incomplete ({exc}). It is derived data: rematerialize vector_tables "
        "(`mm-assets run` or the Dagster UI) to rebuild it from the shards."
    )


def _extension_file(package) -> str:
    # The pip packages ship the binary for the pinned duckdb version; nothing is downloaded.
    return str(next(Path(package.__path__[0]).rglob("*.duckdb_extension")))


# Each is loaded only where it is used: DuckDB checks an extension's signature over the whole file
# on every new database (0.1 s for vss, 0.05 s for fts), and one `mm-assets run` opened six.


def load_vss_sql() -> str:
    """The statement that loads vss from its pip package (also written into the generation's SQL file)."""
    return f"LOAD '{_extension_file(duckdb_extension_vss)}'"


def load_vss(con: duckdb.DuckDBPyConnection) -> None:
    """HNSW indexes: a database holding one cannot even be opened without it."""
    con.execute(load_vss_sql())


def load_fts(con: duckdb.DuckDBPyConnection) -> None:
    """BM25 over the text chunks (each segment holds its own index): to build or query one; a
    segment holding one attaches without it. Loading it again is free."""
    con.execute(f"LOAD '{_extension_file(duckdb_extension_fts)}'")
