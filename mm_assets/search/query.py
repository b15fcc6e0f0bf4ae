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
from mm_assets.store.vector_db import MODALITY_CODES, VectorDBError, open_read_only

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
    matrix: str  # serving matrix, relative to the home folder
    metadata: dict


def list_encoder_tables(con: duckdb.DuckDBPyConnection) -> list[EncoderTable]:
    rows = con.execute("""
        SELECT e.key, e.name, e.table_name, e.embedding_dim,
               EXISTS (SELECT 1 FROM duckdb_indexes() i WHERE i.table_name = e.table_name) AS has_hnsw,
               e.is_current, e.matrix, e.metadata
        FROM encoders e ORDER BY e.is_default DESC, e.is_current DESC, e.name, e.key""").fetchall()
    return [EncoderTable(*r[:7], json.loads(r[7])) for r in rows]


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


def exact_top_rows(matrix: np.ndarray, codes: np.ndarray, query: np.ndarray, k: int, modality: str | None):
    """Rows of the k smallest cosine distances (ties broken by row, i.e. by chunk id), and the distances."""
    distances = 1.0 - matrix @ query
    if modality:
        distances = np.where(codes == MODALITY_CODES[modality], distances, np.inf)
    k = min(k, int(np.isfinite(distances).sum()))
    if k == 0:
        return np.zeros(0, dtype=np.int64), distances[:0]
    threshold = np.partition(distances, k - 1)[k - 1]
    candidates = np.flatnonzero(distances <= threshold)  # every tie at the boundary, then order
    ordered = candidates[np.lexsort((candidates, distances[candidates]))][:k]
    return ordered, distances[ordered]


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
    """Top-k chunks by cosine distance. Exact by default (a matrix product over the serving matrix);
    uses the HNSW index when the table has one and ``exact`` is False (approximate, over-fetching
    when a modality filter applies)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    con = open_read_only(db_path)
    try:
        table = pick_encoder_table(con, encoder, default_key)
        query = embed_query(recorded_encoder(table), text, image).astype(np.float32)
        columns = "c.chunk_id, f.path, c.modality, c.text, c.heading, c.file_id"
        joins = "JOIN chunks c USING (chunk_id) JOIN files f USING (file_id)"
        if table.has_hnsw and not exact:
            vec = f"$q::FLOAT[{table.dim}]"
            rows = con.execute(
                f"""
                SELECT {columns}, e.distance FROM (
                    SELECT chunk_id, array_cosine_distance(embedding, {vec}) AS distance FROM {table.table_name}
                    ORDER BY array_cosine_distance(embedding, {vec}) LIMIT $fetch) e {joins}
                {"WHERE c.modality = $modality" if modality else ""}
                ORDER BY e.distance, c.chunk_id LIMIT $k""",
                {
                    "q": query.tolist(),
                    "k": k,
                    "fetch": k * 8 if modality else k,
                    **({"modality": modality} if modality else {}),
                },
            ).fetchall()
        else:
            matrix_path = db_path.parent / table.matrix
            matrix = np.load(matrix_path, mmap_mode="r")
            codes = np.load(matrix_path.with_suffix(".modality.npy"))
            top, distances = exact_top_rows(matrix, codes, query, k, modality)
            found = {
                r[0]: r[1:]
                for r in con.execute(
                    f"SELECT e.row, {columns} FROM {table.table_name} e {joins} WHERE e.row IN (SELECT unnest($rows))",
                    {"rows": top.tolist()},
                ).fetchall()
            }
            rows = [(*found[int(row)], float(d)) for row, d in zip(top, distances)]
    finally:
        con.close()
    return [
        SearchHit(
            path=r[1],
            chunk_id=r[0],
            modality=r[2],
            distance=float(r[6]),
            text=r[3],
            heading=r[4],
            file_id=r[5],
            encoder=table.key,
        )
        for r in rows
    ]
