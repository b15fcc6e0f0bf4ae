"""Cross-modal search over the vector database (read-only; never blocks or sees a rebuild)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import duckdb
import numpy as np

from mm_assets.config import EncoderConfig
from mm_assets.encoders.clip import ClipEncoder
from mm_assets.ingest.files import read_file_bytes
from mm_assets.ingest.images import decode_rgb
from mm_assets.store.vector_db import VectorDBError, open_read_only

_QUERY_IMAGE_MAX_PIXELS = 200_000_000


@dataclass(frozen=True)
class SearchHit:
    path: str
    chunk_id: str
    modality: str
    distance: float  # cosine distance, 0 = same direction
    text: str | None
    heading: str | None
    file_id: str
    encoder: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EncoderTable:
    key: str
    name: str
    table_name: str
    dim: int
    has_hnsw: bool
    is_current: bool
    metadata: dict


def list_encoder_tables(con: duckdb.DuckDBPyConnection) -> list[EncoderTable]:
    rows = con.execute("""
        SELECT e.key, e.name, e.table_name, e.embedding_dim, e.metadata,
               EXISTS (SELECT 1 FROM duckdb_indexes() i WHERE i.table_name = e.table_name) AS has_hnsw,
               e.is_default, e.is_current
        FROM encoders e ORDER BY e.is_default DESC, e.is_current DESC, e.name, e.key""").fetchall()
    return [EncoderTable(r[0], r[1], r[2], r[3], r[5], r[7], json.loads(r[4])) for r in rows]


def pick_encoder_table(con: duckdb.DuckDBPyConnection, encoder: str | None, default_key: str | None) -> EncoderTable:
    """``encoder``: a name (its current table), a key (name_fingerprint) or a table name; else the default."""
    tables = list_encoder_tables(con)
    if not tables:
        raise VectorDBError("the vector database has no embedding tables yet")
    wanted = encoder or default_key
    if wanted is None:
        return tables[0]
    for t in tables:
        if wanted in (t.key, t.table_name):
            return t
    named = [t for t in tables if t.name == wanted]
    if named:
        return named[0]  # sorted current-first
    choices = ", ".join(f"{t.name} ({t.key})" for t in tables)
    if encoder is None:
        raise VectorDBError(
            f"no vectors yet for the configured default encoder ({default_key}); materialize its embeddings, "
            f"or pick one with --encoder: {choices}"
        )
    raise VectorDBError(f"no embedding table for encoder {encoder!r}; available: {choices}")


@lru_cache(maxsize=4)
def _load_encoder(name: str, model_id: str, revision: str, dtype: str) -> ClipEncoder:
    hub_revision = None if revision.startswith("sha256:") else revision
    encoder = ClipEncoder(EncoderConfig(name=name, model=model_id, revision=hub_revision, dtype=dtype))
    if encoder.resolved.revision != revision:
        raise VectorDBError(
            f"the model {model_id} has changed since its vectors were written (recorded {revision}, now "
            f"{encoder.resolved.revision}); rematerialize that encoder's embeddings or restore the model"
        )
    return encoder


def recorded_encoder(table: EncoderTable) -> ClipEncoder:
    """The exact model that wrote the table, whatever the config says today."""
    m = table.metadata
    return _load_encoder(m["encoder"], m["model_id"], m["revision"], m["dtype"])


def embed_query(encoder: ClipEncoder, text: str | None, image: str | Path | None) -> np.ndarray:
    if (text is None) == (image is None):
        raise ValueError("give exactly one of a text query or an image query")
    if text is not None:
        return encoder.embed_texts([text])[0]
    data = read_file_bytes(str(image), max_bytes=2**31)
    rgb = decode_rgb(data, _QUERY_IMAGE_MAX_PIXELS, min_side=encoder.preprocess.shortest_edge)
    return encoder.embed_images([rgb])[0]


def search(
    db_path: Path,
    *,
    text: str | None = None,
    image: str | Path | None = None,
    k: int = 10,
    modality: str | None = None,
    encoder: str | None = None,
    default_key: str | None = None,
    exact: bool = False,
) -> list[SearchHit]:
    """Top-k chunks by cosine distance. Exact by default; uses the HNSW index when the table has one
    and ``exact`` is False (approximate, over-fetching when a modality filter applies)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    con = open_read_only(db_path)
    try:
        table = pick_encoder_table(con, encoder, default_key)
        query = embed_query(recorded_encoder(table), text, image).astype(np.float32).tolist()
        where = "WHERE c.modality = $modality" if modality else ""
        params = {"q": query, "k": k, **({"modality": modality} if modality else {})}
        vec = f"$q::FLOAT[{table.dim}]"
        if table.has_hnsw and not exact:
            params["fetch"] = k * 8 if modality else k
            source = f"""(SELECT chunk_id, array_cosine_distance(embedding, {vec}) AS distance FROM {table.table_name}
                          ORDER BY array_cosine_distance(embedding, {vec}) LIMIT $fetch)"""
        else:
            source = f"(SELECT chunk_id, array_cosine_distance(embedding, {vec}) AS distance FROM {table.table_name})"
        rows = con.execute(
            f"""
            SELECT f.path, c.chunk_id, c.modality, e.distance, c.text, c.heading, c.file_id
            FROM {source} e JOIN chunks c USING (chunk_id) JOIN files f USING (file_id)
            {where} ORDER BY e.distance, c.chunk_id LIMIT $k""",
            params,
        ).fetchall()
    finally:
        con.close()
    return [SearchHit(*r[:3], float(r[3]), *r[4:], encoder=table.key) for r in rows]
