"""Cross-modal search over the vector database (read-only; never blocks or sees a rebuild)."""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mm_assets.config import EncoderConfig
from mm_assets.encoders.fusion import query_in_table
from mm_assets.encoders.identity import recorded_config
from mm_assets.encoders.load import load_encoder
from mm_assets.evaluation.calibration import Calibration, read_calibrations
from mm_assets.formats.images import decode_rgb
from mm_assets.formats.reading import read_file_bytes
from mm_assets.store.catalog import (
    EncoderTable,
    VectorDBError,
    choose_encoder_table,
    chunk_details,
    chunks_around,
    damaged,
    list_encoder_tables,
    load_fts,
    load_vss,
)
from mm_assets.store.compact import COMPACT_KINDS, Int8Scan, SignBitScan
from mm_assets.store.segments import CURRENT, Generation, dead_mask, matrix_path, open_generation
from mm_assets.store.tables import MODALITY_CODES

if TYPE_CHECKING:  # transformers: only when a model has no complete ONNX export
    from mm_assets.encoders.base import Encoder

# A query photo may be larger than files worth indexing; still a bound on what is decoded.
QUERY_IMAGE_MAX_PIXELS = 200_000_000
TEXT_VECTORS_CACHED = 256
# Candidates a compact copy shortlists for exact rescoring. 1000, not 200: at 1M sign-bit vectors
# the top 10's recall is 0.986 against 0.950, at the same latency (the scan dominates; rescoring
# 1000 rows reads 2 MB). benchmarks/compact_vectors.py measures both.
RESCORE = 1000
# Hybrid search: how far down each list (vectors, BM25) reciprocal rank fusion looks, and its constant
# (60, as in Cormack et al.: a hit's fused score is the sum of 1 / (60 + its rank) in each list).
HYBRID_DEPTH = 100
RRF_K = 60
# Cosines (rows x queries) computed in one product by bulk reads: bounds its memory (64 MB).
SIMILARITY_CELLS = 2**24
CHUNK_ID = re.compile(r"[0-9a-f]{32}")  # chunking.chunk_id_of


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
    # Where the chunk sits in its parent file: its role (window, figure, caption, frame, ...), its
    # place in reading order, section, PDF page, character range, region, time span in a video or audio.
    role: str | None = None
    position: int = 0
    section: int | None = None
    page: int | None = None
    char_start: int | None = None
    char_end: int | None = None
    bbox: list[float] | None = None
    t_start: float | None = None
    t_end: float | None = None
    # Alt text and captions: the image chunk they describe (its id, page, region).
    describes: dict | None = None
    # On request: the chunks before and after it in the same file (a paragraph around a hit, say).
    context: list[dict] = field(default_factory=list)
    # How hits were ranked when not by distance: over all modalities, calibrated, the log-odds that the
    # hit is relevant given its cosine (per query/hit modality pair); hybrid, the fused rank score.
    score: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=4)
def _load_checked(config: EncoderConfig, revision: str) -> Encoder:
    encoder = load_encoder(config)
    if encoder.resolved.revision != revision:
        raise VectorDBError(
            f"the model {config.model} has changed since its vectors were written (recorded {revision}, now "
            f"{encoder.resolved.revision}); rematerialize that encoder's embeddings or restore the model"
        )
    return encoder


def recorded_encoder(table: EncoderTable) -> Encoder:
    """The exact model that wrote the table, whatever the config says today."""
    return _load_checked(recorded_config(table.metadata), table.metadata["revision"])


def embed_query(
    encoder: Encoder,
    text: str | None = None,
    image: str | Path | bytes | None = None,
    audio: str | Path | bytes | None = None,
    *,
    max_pixels: int = QUERY_IMAGE_MAX_PIXELS,
) -> np.ndarray:
    """A text, an image or an audio clip (its first window: the length the model takes) as a vector;
    an image or audio clip is a path or the file's bytes."""
    given = {name: value for name, value in (("text", text), ("image", image), ("audio", audio)) if value is not None}
    if len(given) != 1:
        raise ValueError("give exactly one query: a text, an image or an audio file")
    ((modality, query),) = given.items()
    if modality != "text" and modality not in encoder.modalities:
        raise ValueError(
            f"encoder {encoder.config.name!r} embeds {' and '.join(sorted(encoder.modalities))}: it cannot take "
            f"an {modality} query; pick another encoder with --encoder"
        )
    if modality == "text":
        return encoder.embed_texts([query])[0]
    if modality == "audio":
        from mm_assets.formats.media import decode_audio  # PyAV: only for audio queries

        clip = query if isinstance(query, bytes) else str(query)
        return encoder.embed_audio([decode_audio(clip, encoder.sample_rate, 0.0, encoder.max_seconds)])[0]
    data = query if isinstance(query, bytes) else read_file_bytes(str(query), max_bytes=2**31)
    rgb = decode_rgb(data, max_pixels, min_side=encoder.preprocess.shortest_edge)
    return encoder.embed_images([rgb])[0]


def exact_top_rows(
    matrix: np.ndarray,
    codes: np.ndarray,
    ids: np.ndarray,
    query: np.ndarray,
    k: int,
    modality: str | None,
    dead: np.ndarray | None = None,
):
    """Rows of the k smallest cosine distances among the live rows (ties broken by chunk id), and the
    distances."""
    distances = 1.0 - _query_product(matrix, query)
    excluded = _excluded(codes, modality, dead)
    if excluded is not None:
        distances = np.where(excluded, np.inf, distances)
    k = min(k, int(np.isfinite(distances).sum()))
    if k == 0:
        return np.zeros(0, dtype=np.int64), distances[:0]
    threshold = np.partition(distances, k - 1)[k - 1]
    candidates = np.flatnonzero(distances <= threshold)  # every tie at the boundary, then order
    ordered = candidates[np.lexsort((ids[candidates], distances[candidates]))][:k]
    return ordered, distances[ordered]


# A candidate not to keep, in closest_in_rows' keys.
NOT_A_CANDIDATE = np.iinfo(np.int64).max


def closest_in_rows(keys: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of each row's ``most`` smallest keys other than NOT_A_CANDIDATE. One partial
    sort of the block: however many candidates there are (ten thousand copies of one picture), only
    the kept ones are ever listed."""
    if keys.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    most = min(most, keys.shape[1])
    columns = np.argpartition(keys, most - 1, axis=1)[:, :most].ravel()
    rows = np.repeat(np.arange(keys.shape[0]), most)
    kept = keys[rows, columns] != NOT_A_CANDIDATE
    return rows[kept], columns[kept]


def closest_per_row(rows: np.ndarray, distance: np.ndarray, tiebreak: np.ndarray, most: int) -> np.ndarray:
    """Which candidates (a query row and a distance each) to keep: each row's ``most`` closest, ties
    broken by ``tiebreak``. Their indices, in the candidates' order."""
    if len(rows) == 0 or np.bincount(rows).max() <= most:
        return np.arange(len(rows))
    order = np.lexsort((tiebreak, distance, rows))
    ranked = rows[order]
    place = np.arange(len(order)) - np.searchsorted(ranked, ranked)  # 0 for each row's closest
    return np.sort(order[place < most])


def _query_product(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """matrix @ query for a search, in torch, not numpy: numpy's BLAS threads keep spinning after a
    product and starve the next query's forward pass on the same cores (measured 3x slower end to end
    on 2 cores). Imported here, not with the module: steps that only read vectors in bulk (duplicates,
    moderation: numpy, once per run) never pay torch's import."""
    import torch

    return (torch.from_numpy(matrix) @ torch.from_numpy(query)).numpy()


def rescored_top_rows(
    matrix: np.ndarray,
    similarity: np.ndarray,
    codes: np.ndarray,
    ids: np.ndarray,
    query: np.ndarray,
    k: int,
    modality: str | None,
    dead: np.ndarray | None,
    rescore: int,
):
    """The k nearest of the ``rescore`` live rows a compact copy finds most similar, by exact cosine
    distance read from the float32 matrix for those rows only; ties broken by chunk id."""
    excluded = _excluded(codes, modality, dead)
    if excluded is not None:
        similarity = np.where(excluded, -np.inf, similarity)
    n = min(max(rescore, k), int(np.isfinite(similarity).sum()))
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    shortlist = np.sort(np.argpartition(-similarity, n - 1)[:n])  # in row order: the memory map reads forward
    distances = 1.0 - _query_product(np.ascontiguousarray(matrix[shortlist]), query)
    best = np.lexsort((ids[shortlist], distances))[:k]
    return shortlist[best], distances[best]


def _excluded(codes: np.ndarray, modality: str | None, dead: np.ndarray | None) -> np.ndarray | None:
    """Rows a query must not return: dead ones, and those of another modality than asked for."""
    excluded = dead if dead is not None and dead.any() else None
    if modality:
        wrong = codes != MODALITY_CODES[modality]
        excluded = wrong if excluded is None else excluded | wrong
    return excluded


@dataclass(frozen=True)
class SegmentVectors:
    """One segment's part of an encoder table, as exact search and HNSW read it."""

    alias: str  # the segment's schema in the reader's connection (s0, s1, ...)
    matrix: np.ndarray
    codes: np.ndarray  # modality per row
    ids: np.ndarray  # chunk id per row
    order: np.ndarray  # the rows in chunk-id order
    dead: np.ndarray  # True where the row is no longer live
    has_hnsw: bool
    # The scans of its compact copies by kind (store/compact.py); none in segments written before
    # they existed, which are then searched exactly.
    compact: dict[str, SignBitScan | Int8Scan] = field(default_factory=dict)

    def top(
        self, query: np.ndarray, k: int, modality: str | None, compact: str | None = None, rescore: int = RESCORE
    ) -> list[tuple[str, float]]:
        if compact in self.compact:
            similarity = self.compact[compact](query)
            rows, distances = rescored_top_rows(
                self.matrix, similarity, self.codes, self.ids, query, k, modality, self.dead, rescore
            )
        else:
            rows, distances = exact_top_rows(self.matrix, self.codes, self.ids, query, k, modality, self.dead)
        return [(str(self.ids[r]), float(d)) for r, d in zip(rows, distances)]

    def find(self, chunk_id: str) -> np.ndarray | None:
        at = int(np.searchsorted(self.ids, chunk_id, sorter=self.order))
        row = int(self.order[at]) if at < len(self.order) else -1
        if row >= 0 and self.ids[row] == chunk_id and not self.dead[row]:
            return np.asarray(self.matrix[row], dtype=np.float32)
        return None


def neighbouring_chunks(con: duckdb.DuckDBPyConnection, hits: list[SearchHit], width: int) -> list[SearchHit]:
    """Each hit with the chunks up to ``width`` positions before and after it in its file."""
    if width < 1 or not hits:
        return hits
    nearby = chunks_around(con, [(h.file_id, h.position) for h in hits], width)

    def around(h: SearchHit) -> list[dict]:
        return [
            {k: v for k, v in c.items() if k != "file_id"}
            for c in nearby
            if c["file_id"] == h.file_id and c["chunk_id"] != h.chunk_id and abs(c["position"] - h.position) <= width
        ]

    return [replace(h, context=around(h)) for h in hits]


def first_per_key(hits: list[SearchHit], key) -> list[SearchHit]:
    """Each ``key(hit)`` once, at the rank of its best hit."""
    seen: set = set()
    out = []
    for h in hits:
        if key(h) not in seen:
            seen.add(key(h))
            out.append(h)
    return out


def best_per_file(hits: list[SearchHit], k: int) -> list[SearchHit]:
    """Results grouped by file: each file once, at the rank of its best chunk."""
    return first_per_key(hits, lambda h: h.file_id)[:k]


class Searcher:
    """Answers queries from the vector database, keeping the connection, models and serving
    matrices between queries. When an update publishes a new generation, the next query opens it;
    until then queries see the whole previous one (its files stay readable while open)."""

    def __init__(
        self,
        db_path: Path,
        hnsw_ef_search: int | None = None,
        max_image_pixels: int = QUERY_IMAGE_MAX_PIXELS,
        calibrations: Path | None = None,
        duplicate_pairs: Path | None = None,
    ):
        self.db_path = Path(db_path)
        # The duplicates asset's pairs, which ``dedup`` collapses by (None: nothing to collapse).
        self.duplicate_pairs = duplicate_pairs
        self._duplicate_groups: tuple[int, dict[str, str]] | None = None
        # Where retrieval_eval writes each encoder key's score calibration (None: never calibrate).
        self.calibrations = calibrations
        self.max_image_pixels = max_image_pixels  # query images larger than this are refused
        self.hnsw_ef_search = hnsw_ef_search  # HNSW candidate list size: higher = better recall, slower
        self._con: duckdb.DuckDBPyConnection | None = None
        self._generation: Generation | None = None
        self._opened: tuple[int, int] | None = None
        self._vectors: dict[str, list[SegmentVectors]] = {}
        self._file_keys: dict[tuple[str, str], np.ndarray] = {}  # (table, segment alias) -> file key per row
        self._tables: list[EncoderTable] = []
        # Text query vectors by (encoder key, text): the page re-asks the same text with other filters.
        self._text_vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        # Encoder key -> (its calibration file's stamp, the calibration), reread when the file changes.
        self._calibrations: dict[str, tuple[int, dict]] = {}

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The open generation, reopened when an update has published a newer one."""
        try:
            st = (self.db_path / CURRENT).stat()
            identity = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            identity = None
        if self._con is None or identity != self._opened:
            self.close()
            self._con, self._generation = open_generation(self.db_path)
            try:
                if self.hnsw_ef_search:
                    load_vss(self._con)  # its setting exists only once it is loaded
                    self._con.execute(f"SET hnsw_ef_search = {int(self.hnsw_ef_search)}")
                self._tables = list_encoder_tables(self._con)
            except duckdb.Error as exc:
                self.close()
                raise damaged(f"the vector database {self.db_path}", exc) from None
            self._opened = identity
        return self._con

    def tables(self) -> list[EncoderTable]:
        """The encoder tables of the database as it is now."""
        self.connection()
        return self._tables

    def generation(self) -> Generation:
        """The generation queries are answered from."""
        self.connection()
        return self._generation

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
        self._con, self._generation, self._vectors, self._file_keys = None, None, {}, {}

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _segment_vectors(self, table: EncoderTable) -> list[SegmentVectors]:
        if table.table_name not in self._vectors:
            parts = []
            for i, segment in enumerate(self._generation.segments):
                if table.table_name not in segment.rows:
                    continue
                path = matrix_path(self.db_path, segment.name, table.table_name)
                try:
                    matrix = np.load(path, mmap_mode="c")  # copy-on-write: never written, torch wants writable
                    codes, ids = np.load(path.with_suffix(".modality.npy")), np.load(path.with_suffix(".ids.npy"))
                    order = np.load(path.with_suffix(".order.npy"))
                    compact = _compact_copies(path)
                except (OSError, ValueError) as exc:
                    raise damaged(f"the serving matrix {path}", exc) from None
                if not len(matrix) == len(codes) == len(ids) == len(order) == segment.rows[table.table_name]:
                    raise damaged(f"the serving matrix {path}", f"{len(matrix)} rows, expected {segment.rows}")
                dead = dead_mask(self._con, table.table_name, segment)
                parts.append(
                    SegmentVectors(f"s{i}", matrix, codes, ids, order, dead, table.table_name in segment.hnsw, compact)
                )
            live = sum(int((~p.dead).sum()) for p in parts)
            if live != table.n_vectors:
                raise damaged(
                    f"the serving matrices of {table.table_name}", f"{live} live rows, expected {table.n_vectors}"
                )
            self._vectors[table.table_name] = parts
        return self._vectors[table.table_name]

    def _embed(self, table: EncoderTable, text, image, audio) -> np.ndarray:
        """The query in the table's space (the recorded model's vector, expanded for late fusion)."""
        fusion = table.metadata.get("fusion")
        if text is None or image is not None or audio is not None:
            vector = embed_query(recorded_encoder(table), text, image, audio, max_pixels=self.max_image_pixels)
            return query_in_table(vector, fusion)
        key = (table.encoder_key, text)
        if key not in self._text_vectors:
            self._text_vectors[key] = query_in_table(embed_query(recorded_encoder(table), text), fusion).astype(
                np.float32
            )
            if len(self._text_vectors) > TEXT_VECTORS_CACHED:
                self._text_vectors.popitem(last=False)
        self._text_vectors.move_to_end(key)
        return self._text_vectors[key]

    def _bm25_top(self, text: str, k: int) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) of the k best live text chunks for the words of ``text``, each
        segment scored by its own index (their statistics differ a little: a merge, not one index)."""
        con, ranked = self._con, []
        load_fts(con)
        for i, segment in enumerate(self._generation.segments):
            if not segment.rows.get("chunks"):
                continue
            con.execute(f"USE s{i}")  # the index's macros only resolve in their own database
            try:
                ranked += con.execute(
                    f"""SELECT chunk_id, score FROM (
                           SELECT chunk_id, rowid AS rid, fts_main_chunks.match_bm25(chunk_id, $q) AS score
                           FROM s{i}.chunks)
                       WHERE score IS NOT NULL
                         AND rid NOT IN (SELECT rid FROM _dead WHERE tbl = 'chunks' AND seg = $seg)
                       ORDER BY score DESC, chunk_id LIMIT $k""",
                    {"q": text, "seg": segment.name, "k": k},
                ).fetchall()
            finally:
                con.execute("USE memory")
        return sorted(ranked, key=lambda r: (-r[1], r[0]))[:k]

    def _similarities(self, table: EncoderTable, queries: np.ndarray):
        """(segment, first query row, cosines of its rows to a block of queries), a segment and a block
        of queries at a time (SIMILARITY_CELLS bounds a block's memory). numpy: bulk reads, no query."""
        for part in self._segment_vectors(table):
            step = max(1, SIMILARITY_CELLS // max(len(part.ids), 1))
            for start in range(0, len(queries), step):
                yield part, start, part.matrix @ np.ascontiguousarray(queries[start : start + step].T, np.float32)

    def best_similarity(self, table: EncoderTable, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every live chunk of the table: (chunk ids, its highest cosine to any of the query rows)."""
        parts, best = [], []
        for part, _, similarity in self._similarities(table, queries):
            if parts and parts[-1] is part:  # another block of queries over the same segment
                best[-1] = np.maximum(best[-1], similarity.max(axis=1))
            else:
                parts.append(part)
                best.append(similarity.max(axis=1))
        if not parts:
            return np.zeros(0, dtype=object), np.zeros(0, dtype=np.float32)
        return np.concatenate([p.ids[~p.dead] for p in parts]), np.concatenate(
            [b[~p.dead] for p, b in zip(parts, best)]
        )

    def live_vectors(self, table: EncoderTable) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, modality codes) of every live row of the table, a segment after another."""
        parts = self._segment_vectors(table)
        if not parts:
            return np.zeros(0, dtype=object), np.zeros(0, dtype=np.uint8)
        return np.concatenate([p.ids[~p.dead] for p in parts]), np.concatenate([p.codes[~p.dead] for p in parts])

    def stored_vectors(self, table: EncoderTable, chunk_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chunk ids, modality codes, vectors) of those of ``chunk_ids`` live in the table."""
        ids, codes, vectors = [], [], []
        wanted = pa.array(chunk_ids, pa.string())
        for part in self._segment_vectors(table):
            # Arrow's hash set: numpy's isin compares Python strings (2.3 s for 10k in 10k).
            found = pc.is_in(pa.array(part.ids, pa.string()), value_set=wanted).to_numpy(zero_copy_only=False)
            rows = np.flatnonzero(found & ~part.dead)
            ids.append(part.ids[rows])
            codes.append(part.codes[rows])
            vectors.append(np.asarray(part.matrix[rows], dtype=np.float32).reshape(len(rows), table.dim))
        if not ids:
            return np.zeros(0, dtype=object), np.zeros(0, dtype=np.uint8), np.zeros((0, table.dim), np.float32)
        return np.concatenate(ids), np.concatenate(codes), np.concatenate(vectors)

    def similar_rows(
        self, table: EncoderTable, queries: np.ndarray, query_files: np.ndarray, min_cosine: float, most: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For each query vector, the live chunks of other files at or above ``min_cosine`` (> 0): at
        most ``most``, the closest, ties by chunk id, so that copies of one thing all link to the same
        few (``query_files``: ``file_keys`` of the queries' own chunks). As arrays, a pair each: query
        rows, chunk ids, their modality codes, cosines."""
        found = []
        for part, start, similarity in self._similarities(table, queries):
            cosine = similarity.T  # a query per row
            id_rank = np.empty_like(part.order)
            id_rank[part.order] = np.arange(len(part.order))
            # Positive float32s order as their bits do: (-cosine, chunk id) as one int64 key.
            keys = (np.int64(2**31 - 1) - cosine.view(np.int32)) * len(id_rank) + id_rank
            other_file = self._part_file_keys(table, part)[None, :] != query_files[start : start + len(cosine), None]
            keys[~((cosine >= min_cosine) & ~part.dead[None, :] & other_file)] = NOT_A_CANDIDATE
            q, r = closest_in_rows(keys, most)
            found.append((start + q, part.ids[r], part.codes[r], cosine[q, r]))
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0, np.uint8), np.zeros(0, np.float32)
        q, ids, codes, cosines = (np.concatenate(column) for column in zip(*found))
        keep = closest_per_row(q, -cosines, ids, most)  # across segments
        return q[keep], ids[keep], codes[keep], cosines[keep]

    def file_keys(self, chunk_ids: np.ndarray) -> np.ndarray:
        """A 64-bit key of each chunk's file (DuckDB's hash of its file id; 0 for a chunk not in the
        table): tells chunks of one file apart in bulk, without a Python string per chunk."""
        rows = pa.table({"chunk_id": pa.array(chunk_ids, pa.string()), "row": np.arange(len(chunk_ids))})
        con = self.connection()
        con.register("chunk_rows", rows)
        try:
            keys = con.execute(
                """SELECT coalesce(hash(c.file_id), 0) AS file FROM chunk_rows r
                   LEFT JOIN chunks c USING (chunk_id) ORDER BY r.row"""
            ).fetchnumpy()["file"]
        finally:
            con.unregister("chunk_rows")
        return np.asarray(keys, dtype=np.uint64)

    def _part_file_keys(self, table: EncoderTable, part: SegmentVectors) -> np.ndarray:
        key = (table.table_name, part.alias)
        if key not in self._file_keys:
            self._file_keys[key] = self.file_keys(part.ids)
        return self._file_keys[key]

    def _chunk_standing_for(self, table: EncoderTable, like: str) -> str:
        """``like`` as a chunk id: a chunk id as it is; a served file's path, its first chunk in reading
        order with a vector in the table (an item's, for a fused encoder). The path is only looked up,
        never touched on disk (it may come from a request)."""
        if CHUNK_ID.fullmatch(like):
            return like
        chunk_ids = self._con.execute(
            """SELECT c.chunk_id FROM paths p JOIN chunks c USING (file_id)
               WHERE p.path = ? AND p.status = 'ok' ORDER BY c.position""",
            [os.path.abspath(os.path.expanduser(like))],
        ).fetchall()
        for (chunk_id,) in chunk_ids:
            try:
                self._stored_vector(table, chunk_id)
                return chunk_id
            except KeyError:
                continue
        raise KeyError(f"{like}: no served file or chunk with a vector in {table.encoder_key}")

    def _stored_vector(self, table: EncoderTable, chunk_id: str) -> np.ndarray:
        for part in self._segment_vectors(table):
            found = part.find(chunk_id)
            if found is not None:
                return found
        raise KeyError(f"chunk {chunk_id} has no vector in {table.encoder_key}")

    def _hnsw_top(self, part: SegmentVectors, table: EncoderTable, query: np.ndarray, k: int, modality: str | None):
        """The segment's k nearest live rows of the modality through its HNSW index; exact when the
        index's candidates run out before k survive the filters (a rare modality, many deletions)."""
        fetch = k * 8 if modality or part.dead.any() else k
        vec = f"$q::FLOAT[{table.dim}]"
        rows = self._con.execute(
            f"""SELECT rowid, array_cosine_distance(embedding, {vec}) FROM {part.alias}.{table.table_name}
                ORDER BY array_cosine_distance(embedding, {vec}) LIMIT $fetch""",
            {"q": query.tolist(), "fetch": fetch},
        ).fetchall()
        code = MODALITY_CODES[modality] if modality else None
        kept = [
            (str(part.ids[r]), float(d))
            for r, d in rows
            if not part.dead[r] and (code is None or part.codes[r] == code)
        ]
        if len(kept) < k and len(rows) == fetch:
            return part.top(query, k, modality)
        return kept[:k]

    def _nearest(
        self, table: EncoderTable, query: np.ndarray, k: int, modality: str | None, exact: bool, compact: str | None
    ) -> list[tuple[str, float]]:
        """(chunk id, cosine distance) of the k nearest live chunks over every segment."""
        ranked = []
        for part in self._segment_vectors(table):
            if part.has_hnsw and not exact and not compact:
                ranked += self._hnsw_top(part, table, query, k, modality)
            else:
                ranked += part.top(query, k, modality, compact)
        return sorted(ranked, key=lambda r: (r[1], r[0]))[:k]

    def _fused(self, table: EncoderTable, query: np.ndarray, text: str, ranked: list) -> list[tuple[str, float, float]]:
        """(chunk id, cosine distance, fused score), best first: the vector ranking given and BM25's
        as deep, each hit scoring 1 / (RRF_K + its rank) in each list it is in."""
        fused: dict[str, float] = {}
        for rank, (chunk_id, *_) in enumerate(ranked, 1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
        for rank, (chunk_id, _) in enumerate(self._bm25_top(text, len(ranked) or HYBRID_DEPTH), 1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
        distances = {chunk_id: distance for chunk_id, distance, _ in ranked}
        for chunk_id in fused.keys() - distances.keys():  # found by its words alone
            try:
                distances[chunk_id] = float(1.0 - self._stored_vector(table, chunk_id) @ query)
            except KeyError:  # a text chunk this encoder has no vector for: not its hit
                pass
        return [(c, distances[c], fused[c]) for c in sorted(fused, key=lambda c: (-fused[c], c)) if c in distances]

    def duplicate_groups(self) -> dict[str, str]:
        """Chunk id -> its duplicate group, reread when the duplicates asset publishes new pairs."""
        from mm_assets.duplicates import pair_groups, read_pairs

        try:
            stamp = self.duplicate_pairs.stat().st_mtime_ns if self.duplicate_pairs else None
        except FileNotFoundError:
            stamp = None
        if stamp is None:
            return {}
        if self._duplicate_groups is None or self._duplicate_groups[0] != stamp:
            self._duplicate_groups = (stamp, pair_groups(read_pairs(self.duplicate_pairs)))
        return self._duplicate_groups[1]

    def _calibrations_for(self, table: EncoderTable, query_modality: str | None) -> dict[str, Calibration] | None:
        """Target modality -> calibration of its cosines to a query of this modality, when the encoder
        key's latest fit covers every modality of the table (else None: rank by cosine)."""
        if self.calibrations is None or query_modality is None:
            return None
        path = self.calibrations / f"{table.encoder_key}.json"
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if self._calibrations.get(table.encoder_key, (None,))[0] != stamp:
            self._calibrations[table.encoder_key] = (stamp, read_calibrations(self.calibrations, table.encoder_key))
        fitted = self._calibrations[table.encoder_key][1]
        targets = table.metadata["modalities"]
        if not all((query_modality, t) in fitted for t in targets):
            return None
        return {t: fitted[(query_modality, t)] for t in targets}

    def search(
        self,
        *,
        text: str | None = None,
        image: str | Path | bytes | None = None,
        audio: str | Path | bytes | None = None,
        vector: np.ndarray | None = None,
        like: str | None = None,
        k: int = 10,
        modality: str | None = None,
        encoder: str | None = None,
        default_key: str | None = None,
        exact: bool = False,
        compact: str | None = None,
        context: int = 0,
        group_by_file: bool = False,
        calibrated: bool = True,
        hybrid: bool = False,
        dedup: bool = False,
    ) -> list[SearchHit]:
        """Top-k chunks by cosine distance. Exact by default (a matrix product over the serving
        matrix); uses the HNSW index when the table has one and ``exact`` is False (approximate,
        over-fetching when a modality filter applies). ``image`` and ``audio``: a path or the file's
        bytes. ``vector``: an embedding from the same encoder instead of a text, image or audio file.
        ``like``: a chunk id or a served file's path, "more like this" (items like this one, with a
        fused encoder): its stored vector is the query and it is left out of the results. ``compact``
        ("int8" or "binary"): shortlist with that compact copy of the vectors,
        then rank the shortlist exactly. ``context``: attach that many chunks before and after each hit
        in its file. ``group_by_file``: one hit per file. ``calibrated``: over all modalities (no
        ``modality``), rank each modality's hits by their calibrated score (evaluation/calibration.py)
        where retrieval_eval has fitted one for the encoder, instead of by cosine. ``hybrid`` (a text
        query): fuse the vector ranking with BM25 over the text chunks by reciprocal rank fusion,
        so that rare words (codes, names) the model cannot tell apart still find their chunk.
        ``dedup``: one hit per duplicate group (mm_assets/duplicates.py), the best ranked."""
        if k < 1:
            raise ValueError("k must be at least 1")
        if compact not in (None, *COMPACT_KINDS):
            raise ValueError(f"compact must be one of {COMPACT_KINDS}, not {compact!r}")
        con = self.connection()
        table = choose_encoder_table(self._tables, encoder, default_key)
        if like is not None:
            like = self._chunk_standing_for(table, like)
            query = self._stored_vector(table, like)
        elif vector is not None:
            if vector.shape != (table.dim,):
                raise ValueError(
                    f"query vector has shape {vector.shape}; {table.encoder_key} holds {table.dim}-d vectors"
                )
            query = np.asarray(vector, dtype=np.float32)
        else:
            query = self._embed(table, text, image, audio)
        # Grouping keeps the best chunk of each file or duplicate group: look further down the ranking.
        fetch = (k * 8 if group_by_file or dedup else k) + (like is not None)
        hybrid = hybrid and text is not None and modality in (None, "text")
        calibrations = None
        try:
            if calibrated and modality is None:
                calibrations = self._calibrations_for(table, _query_modality(con, text, image, audio, like))

            def ranked_hits(fetch: int) -> list[SearchHit]:
                depth = max(fetch, HYBRID_DEPTH) if hybrid else fetch  # fusion looks further down each list
                if calibrations:  # one list per modality, merged by calibrated score
                    ranked = [
                        (chunk_id, distance, float(calibration.calibrate(1.0 - distance)))
                        for target, calibration in calibrations.items()
                        for chunk_id, distance in self._nearest(table, query, depth, target, exact, compact)
                    ]
                    ranked = sorted(ranked, key=lambda r: (-r[2], r[0]))[:depth]
                else:
                    ranked = [(c, d, None) for c, d in self._nearest(table, query, depth, modality, exact, compact)]
                if hybrid:
                    ranked = self._fused(table, query, text, ranked)
                ranked = ranked[:fetch]
                details = chunk_details(con, [chunk_id for chunk_id, _, _ in ranked])
                return sorted(
                    (
                        # rounding can take 1 - cos a hair below zero for identical directions
                        SearchHit(
                            chunk_id=chunk_id,
                            distance=max(0.0, float(distance)),
                            encoder=table.encoder_key,
                            score=score,
                            **details[chunk_id],
                        )
                        for chunk_id, distance, score in ranked
                        if chunk_id != like and (modality is None or details[chunk_id]["modality"] == modality)
                    ),
                    key=lambda h: (-h.score, h.chunk_id) if h.score is not None else (h.distance, h.chunk_id),
                )

            hits = ranked_hits(fetch)
            if dedup:
                groups = self.duplicate_groups()

                # Large groups can fill the whole first look: look 4x deeper until k groups or the end.
                def first_per_group(hits: list[SearchHit]) -> list[SearchHit]:  # a chunk in no group is its own
                    return first_per_key(hits, lambda h: groups.get(h.chunk_id, h.chunk_id))

                while len(first_per_group(hits)) < k and fetch < table.n_vectors:
                    fetch *= 4
                    hits = ranked_hits(fetch)
                hits = first_per_group(hits)
            hits = best_per_file(hits, k) if group_by_file else hits[:k]
            return neighbouring_chunks(con, hits, context)
        except duckdb.Error as exc:
            raise damaged(f"the vector database {self.db_path}", exc) from None


def _query_modality(con: duckdb.DuckDBPyConnection, text, image, audio, like: str | None) -> str | None:
    """What kind of thing the query is (None for a bare vector: it could be anything)."""
    if like is not None:
        return chunk_details(con, [like])[like]["modality"]
    return next((m for m, q in (("text", text), ("image", image), ("audio", audio)) if q is not None), None)


def _compact_copies(matrix: Path) -> dict[str, SignBitScan | Int8Scan]:
    """Scans of the compact copies written beside a serving matrix (those that exist), memory-mapped."""
    found = {}
    if matrix.with_suffix(".int8.npy").exists():
        codes = np.load(matrix.with_suffix(".int8.npy"), mmap_mode="r")
        found["int8"] = Int8Scan(codes, np.load(matrix.with_suffix(".int8scale.npy")))
    if matrix.with_suffix(".bits.npy").exists():
        found["binary"] = SignBitScan(np.load(matrix.with_suffix(".bits.npy"), mmap_mode="r"))
    return found


def search(
    db_path: Path,
    hnsw_ef_search: int | None = None,
    calibrations: Path | None = None,
    duplicate_pairs: Path | None = None,
    **query,
) -> list[SearchHit]:
    """One query (the CLI's); keep a Searcher for many."""
    with Searcher(db_path, hnsw_ef_search, calibrations=calibrations, duplicate_pairs=duplicate_pairs) as searcher:
        return searcher.search(**query)
