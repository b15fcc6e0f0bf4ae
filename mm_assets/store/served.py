"""The served vectors: one published generation, open for reading.

Every read of served vectors goes through ``ServedVectors``: search's scans (exact, a quantized
shortlist rescored exactly, HNSW) and BM25, the look-up of one chunk's vector, and the bulk reads of
the steps that work on all of them (duplicates, moderation, evaluation). It keeps the connection and
the memory-mapped serving matrices between calls; when an update publishes a new generation, the
next call opens it, and until then every call sees the whole previous one (its files stay readable
while open).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mm_assets.store.catalog import EncoderTable, list_encoder_tables
from mm_assets.store.duck import damaged, load_fts, load_vss
from mm_assets.store.matrices import read_matrices
from mm_assets.store.quantized import Int8Scan, SignBitScan
from mm_assets.store.scans import RESCORE, exact_top_rows, rescored_top_rows
from mm_assets.store.segments import CURRENT, Generation, dead_mask, open_generation
from mm_assets.store.tables import MODALITY_CODES

# Cosines (rows x queries) computed in one product by bulk reads: bounds its memory (64 MB).
SIMILARITY_CELLS = 2**24


@dataclass(frozen=True)
class SegmentVectors:
    """One segment's part of an encoder table, as the scans read it."""

    alias: str  # the segment's schema in the reader's connection (s0, s1, ...)
    matrix: np.ndarray
    codes: np.ndarray  # modality per row
    ids: np.ndarray  # chunk id per row
    order: np.ndarray  # the rows in chunk-id order
    dead: np.ndarray  # True where the row is no longer live
    has_hnsw: bool
    # The scans of its quantized copies by kind (store/quantized.py).
    quantized: dict[str, SignBitScan | Int8Scan] = field(default_factory=dict)

    def top(
        self, query: np.ndarray, k: int, modality: str | None, quantized: str | None = None, rescore: int = RESCORE
    ) -> list[tuple[str, float]]:
        if quantized in self.quantized:
            similarity = self.quantized[quantized](query)
            rows, distances = rescored_top_rows(
                self.matrix, similarity, self.codes, self.ids, query, k, modality, self.dead, rescore
            )
        else:
            rows, distances = exact_top_rows(self.matrix, self.codes, self.ids, query, k, modality, self.dead)
        return [(str(self.ids[r]), float(d)) for r, d in zip(rows, distances)]

    @cached_property
    def chunk_ids(self) -> pa.Array:
        """The ids as Arrow strings, for Arrow's hash look-ups: converted once (0.1 s a million)."""
        return pa.array(self.ids, pa.string())

    def find(self, chunk_id: str) -> np.ndarray | None:
        at = int(np.searchsorted(self.ids, chunk_id, sorter=self.order))
        row = int(self.order[at]) if at < len(self.order) else -1
        if row >= 0 and self.ids[row] == chunk_id and not self.dead[row]:
            return np.asarray(self.matrix[row], dtype=np.float32)
        return None


class ServedVectors:
    """The generation being served at ``root`` (the vector database folder), read-only."""

    def __init__(self, root: Path, hnsw_ef_search: int | None = None):
        self.root = Path(root)
        self.hnsw_ef_search = hnsw_ef_search  # HNSW candidate list size: higher = better recall, slower
        self._con: duckdb.DuckDBPyConnection | None = None
        self._generation: Generation | None = None
        self._opened: tuple[int, int] | None = None
        self._tables: list[EncoderTable] = []
        self._segments: dict[str, list[SegmentVectors]] = {}
        self._file_keys: dict[tuple[str, str], np.ndarray] = {}  # (table, segment alias) -> file key per row

    # --- the open generation -------------------------------------------------------------------

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The open generation, reopened when an update has published a newer one. Only here: the
        reads below stay on the generation open when they start, as the tables they are given do."""
        try:
            st = (self.root / CURRENT).stat()
            identity = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            identity = None
        if self._con is None or identity != self._opened:
            self.close()
            self._con, self._generation = open_generation(self.root)
            try:
                if self.hnsw_ef_search:
                    load_vss(self._con)  # its setting exists only once it is loaded
                    self._con.execute(f"SET hnsw_ef_search = {int(self.hnsw_ef_search)}")
                self._tables = list_encoder_tables(self._con)
            except duckdb.Error as exc:
                self.close()
                raise damaged(f"the vector database {self.root}", exc) from None
            self._opened = identity
        return self._con

    def tables(self) -> list[EncoderTable]:
        """The encoder tables of the generation as it is now."""
        self.connection()
        return self._tables

    def generation(self) -> Generation:
        self.connection()
        return self._generation

    def _opened_generation(self) -> duckdb.DuckDBPyConnection:
        """The generation already open (opened if none is)."""
        return self._con if self._con is not None else self.connection()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
        self._con, self._generation, self._segments, self._file_keys = None, None, {}, {}

    def __enter__(self) -> ServedVectors:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def segments(self, table: EncoderTable) -> list[SegmentVectors]:
        """The table's part in each segment, its serving matrices memory-mapped on first use."""
        self._opened_generation()
        if table.table_name not in self._segments:
            parts = []
            for i, segment in enumerate(self._generation.segments):
                if table.table_name not in segment.rows:
                    continue
                m = read_matrices(self.root, segment.name, table.table_name, segment.rows[table.table_name])
                dead = dead_mask(self._con, table.table_name, segment)
                has_hnsw = table.table_name in segment.hnsw
                parts.append(SegmentVectors(f"s{i}", m.matrix, m.codes, m.ids, m.order, dead, has_hnsw, m.quantized))
            live = sum(int((~p.dead).sum()) for p in parts)
            if live != table.n_vectors:
                raise damaged(
                    f"the serving matrices of {table.table_name}", f"{live} live rows, expected {table.n_vectors}"
                )
            self._segments[table.table_name] = parts
        return self._segments[table.table_name]

    # --- scans for one query -------------------------------------------------------------------

    def nearest(
        self,
        table: EncoderTable,
        query: np.ndarray,
        k: int,
        modality: str | None = None,
        exact: bool = False,
        quantized: str | None = None,
    ) -> list[tuple[str, float]]:
        """(chunk id, cosine distance) of the k nearest live chunks over every segment: exact, or a
        shortlist by a ``quantized`` copy rescored exactly, or through a segment's HNSW index where
        it has one and neither ``exact`` nor ``quantized`` is asked."""
        ranked = []
        for part in self.segments(table):
            if part.has_hnsw and not exact and not quantized:
                ranked += self._hnsw_top(part, table, query, k, modality)
            else:
                ranked += part.top(query, k, modality, quantized)
        return sorted(ranked, key=lambda r: (r[1], r[0]))[:k]

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

    def vector(self, table: EncoderTable, chunk_id: str) -> np.ndarray:
        """One live chunk's vector; KeyError when the table has none for it."""
        for part in self.segments(table):
            found = part.find(chunk_id)
            if found is not None:
                return found
        raise KeyError(f"chunk {chunk_id} has no vector in {table.encoder_key}")

    def bm25_top(self, text: str, k: int) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) of the k best live text chunks for the words of ``text``, each
        segment scored by its own index (their statistics differ a little: a merge, not one index)."""
        con, ranked = self._opened_generation(), []
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

    # --- bulk reads ----------------------------------------------------------------------------

    def live_vectors(self, table: EncoderTable) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, modality codes) of every live row of the table, a segment after another."""
        parts = self.segments(table)
        if not parts:
            return np.zeros(0, dtype=object), np.zeros(0, dtype=np.uint8)
        return np.concatenate([p.ids[~p.dead] for p in parts]), np.concatenate([p.codes[~p.dead] for p in parts])

    def stored_vectors(self, table: EncoderTable, chunk_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chunk ids, modality codes, vectors) of those of ``chunk_ids`` live in the table, in the
        segments' row order."""
        ids, codes, vectors = [], [], []
        wanted = pa.array(chunk_ids, pa.string())
        for part in self.segments(table):
            # Arrow's hash set: numpy's isin compares Python strings (2.3 s for 10k in 10k).
            found = pc.is_in(part.chunk_ids, value_set=wanted).to_numpy(zero_copy_only=False)
            rows = np.flatnonzero(found & ~part.dead)
            ids.append(part.ids[rows])
            codes.append(part.codes[rows])
            vectors.append(np.asarray(part.matrix[rows], dtype=np.float32).reshape(len(rows), table.dim))
        if not ids:
            return np.zeros(0, dtype=object), np.zeros(0, dtype=np.uint8), np.zeros((0, table.dim), np.float32)
        return np.concatenate(ids), np.concatenate(codes), np.concatenate(vectors)

    def vectors_in_order(self, table: EncoderTable, chunk_ids: list[str]) -> np.ndarray:
        """The vectors of ``chunk_ids`` (each live in the table), in the order given."""
        ids, _, vectors = self.stored_vectors(table, chunk_ids)
        at = pc.index_in(pa.array(chunk_ids, pa.string()), value_set=pa.array(ids, pa.string()))
        rows = at.to_numpy(zero_copy_only=False)
        if at.null_count:
            raise KeyError(f"{at.null_count} of the chunks asked have no live vector in {table.encoder_key}")
        return vectors[rows.astype(np.int64)].reshape(len(chunk_ids), table.dim)

    def best_similarity(self, table: EncoderTable, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every live chunk of the table: (chunk ids, its highest cosine to any of the query rows).
        numpy, a tile of rows at a time (SIMILARITY_CELLS bounds its memory): each row is read once."""
        queries = np.ascontiguousarray(queries.T, np.float32)
        ids, best = [np.zeros(0, dtype=object)], [np.zeros(0, dtype=np.float32)]
        for part in self.segments(table):
            step = max(1, SIMILARITY_CELLS // max(queries.shape[1], 1))
            part_best = np.full(len(part.ids), -np.inf, np.float32)
            if queries.shape[1]:
                for start in range(0, len(part.ids), step):
                    part_best[start : start + step] = (part.matrix[start : start + step] @ queries).max(axis=1)
            ids.append(part.ids[~part.dead])
            best.append(part_best[~part.dead])
        return np.concatenate(ids), np.concatenate(best)

    def rows_near(
        self, table: EncoderTable, chunk_ids: np.ndarray, min_cosine: float, modality: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chunk ids, vectors, file keys) of ``chunk_ids`` and of the live rows of the modality at
        ``min_cosine`` or more to any of them: what comparing a few new chunks with every live one
        needs, without gathering every row (``live_rows``)."""
        _, _, queries = self.stored_vectors(table, chunk_ids)
        ids, best = self.best_similarity(table, queries)
        wanted = pc.unique(
            pa.concat_arrays([pa.array(ids[best >= min_cosine], pa.string()), pa.array(chunk_ids, pa.string())])
        )
        ids, codes, vectors = self.stored_vectors(table, wanted)
        keep = codes == MODALITY_CODES[modality]
        return ids[keep], vectors[keep], self.file_keys(ids[keep])

    def live_rows(self, table: EncoderTable, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chunk ids, vectors, file keys) of the table's live rows of one modality, gathered from
        every segment into one matrix (a copy: the duplicates scan reads it many times over)."""
        ids, vectors, files = [np.zeros(0, object)], [np.zeros((0, table.dim), np.float32)], [np.zeros(0, np.uint64)]
        for part in self.segments(table):
            rows = np.flatnonzero(~part.dead & (part.codes == MODALITY_CODES[modality]))
            ids.append(part.ids[rows])
            vectors.append(np.asarray(part.matrix[rows], dtype=np.float32).reshape(len(rows), table.dim))
            files.append(self._part_file_keys(table, part)[rows])
        return np.concatenate(ids), np.concatenate(vectors), np.concatenate(files)

    def file_keys(self, chunk_ids: np.ndarray) -> np.ndarray:
        """A 64-bit key of each chunk's file (DuckDB's hash of its file id; 0 for a chunk not in the
        table): tells chunks of one file apart in bulk, without a Python string per chunk."""
        rows = pa.table({"chunk_id": pa.array(chunk_ids, pa.string()), "row": np.arange(len(chunk_ids))})
        con = self._opened_generation()
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

    def stored_ids(self, table_name: str, wanted: set[str]) -> set[str] | None:
        """Those of ``wanted`` with a vector stored in the table, live or not (None: the generation
        has no such table)."""
        con = self.connection()
        if table_name not in {t.table_name for t in self._tables}:
            return None
        con.register("wanted", pa.table({"chunk_id": sorted(wanted)}))
        try:
            rows = con.execute(f"SELECT chunk_id FROM {table_name}_stored SEMI JOIN wanted USING (chunk_id)")
            return {r[0] for r in rows.fetchall()}
        finally:
            con.unregister("wanted")
