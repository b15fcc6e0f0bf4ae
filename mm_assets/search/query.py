"""Cross-modal search over the served vectors (read-only; never blocks or sees a rebuild).

``Searcher.search`` composes the ranking policies, each in its own module: the query as a vector
(query_vectors.py), the nearest chunks from the served vectors (store/served.py), one list per
modality merged by calibrated score (calibrated.py), fusion with BM25 (rrf.py), one hit per
duplicate group (dedup.py) or per file, and the chunks around each hit (hits.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from mm_assets.search.calibrated import Calibrations, merged_by_score
from mm_assets.search.dedup import DuplicateGroups
from mm_assets.search.hits import SearchHit, best_per_file, hits_of, neighbouring_chunks
from mm_assets.search.query_vectors import QUERY_IMAGE_MAX_PIXELS, QueryVectors
from mm_assets.search.rrf import HYBRID_DEPTH, fused_ranking
from mm_assets.store.catalog import EncoderTable, choose_encoder_table, chunk_details
from mm_assets.store.duck import damaged
from mm_assets.store.quantized import QUANTIZED_KINDS
from mm_assets.store.served import ServedVectors

CHUNK_ID = re.compile(r"[0-9a-f]{32}")  # chunking.chunk_id_of


@dataclass(frozen=True)
class Ranking:
    """How one search ranks, besides its query (see ``Searcher.search``)."""

    modality: str | None
    exact: bool
    quantized: str | None
    calibrations: dict | None
    hybrid_text: str | None
    leave_out: str | None

    def ranked(self, served: ServedVectors, table: EncoderTable, query: np.ndarray, fetch: int):
        """(chunk id, distance, score or None) of the ``fetch`` best, as the ranking orders them."""
        depth = max(fetch, HYBRID_DEPTH) if self.hybrid_text else fetch  # fusion looks further down each list
        if self.calibrations:  # one list per modality, merged by calibrated score
            nearest = {t: served.nearest(table, query, depth, t, self.exact, self.quantized) for t in self.calibrations}
            ranked = merged_by_score(nearest, self.calibrations, depth)
        else:
            nearest = served.nearest(table, query, depth, self.modality, self.exact, self.quantized)
            ranked = [(c, d, None) for c, d in nearest]
        if self.hybrid_text:
            bm25 = served.bm25_top(self.hybrid_text, len(ranked) or HYBRID_DEPTH)
            ranked = fused_ranking(ranked, bm25, lambda c: float(1.0 - served.vector(table, c) @ query))
        return [r for r in ranked[:fetch] if r[0] != self.leave_out]


class Searcher:
    """Answers queries from the served vectors, keeping models, query vectors and the open generation
    between queries."""

    def __init__(
        self,
        db_path: Path,
        hnsw_ef_search: int | None = None,
        max_image_pixels: int = QUERY_IMAGE_MAX_PIXELS,
        calibrations: Path | None = None,
        duplicate_pairs: Path | None = None,
    ):
        self.db_path = Path(db_path)
        self.served = ServedVectors(self.db_path, hnsw_ef_search)
        self.queries = QueryVectors(max_image_pixels)
        # Where retrieval_eval writes each encoder key's score calibration (None: never calibrate).
        self.calibrations = Calibrations(calibrations)
        # The duplicates asset's pairs, which ``dedup`` collapses by (None: nothing to collapse).
        self.duplicates = DuplicateGroups(duplicate_pairs)

    def close(self) -> None:
        self.served.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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
        ("int8" or "binary"): shortlist with that quantized copy of the vectors, then rank the
        shortlist exactly. ``context``: attach that many chunks before and after each hit in its
        file. ``group_by_file``: one hit per file. ``calibrated``: over all modalities (no
        ``modality``), rank each modality's hits by their calibrated score (search/calibrated.py)
        where retrieval_eval has fitted one for the encoder, instead of by cosine. ``hybrid`` (a text
        query): fuse the vector ranking with BM25 over the text chunks (search/rrf.py). ``dedup``:
        one hit per duplicate group (mm_assets/duplicates.py), the best ranked."""
        if k < 1:
            raise ValueError("k must be at least 1")
        if compact not in (None, *QUANTIZED_KINDS):
            raise ValueError(f"compact must be one of {QUANTIZED_KINDS}, not {compact!r}")
        con = self.served.connection()
        table = choose_encoder_table(self.served.tables(), encoder, default_key)
        if like is not None:
            like = self._chunk_standing_for(con, table, like)
            query = self.served.vector(table, like)
        elif vector is not None:
            if vector.shape != (table.dim,):
                raise ValueError(
                    f"query vector has shape {vector.shape}; {table.encoder_key} holds {table.dim}-d vectors"
                )
            query = np.asarray(vector, dtype=np.float32)
        else:
            query = self.queries.embed(table, text, image, audio)
        try:
            calibrations = None
            if calibrated and modality is None:
                calibrations = self.calibrations.for_query(table, _query_modality(con, text, image, audio, like))
            hybrid_text = text if hybrid and text is not None and modality in (None, "text") else None
            ranking = Ranking(modality, exact, compact, calibrations, hybrid_text, like)
            # Grouping keeps the best chunk of each file or duplicate group: look further down the ranking.
            fetch = (k * 8 if group_by_file or dedup else k) + (like is not None)
            hits = self._hits(con, ranking, table, query, fetch)
            if dedup:  # large groups can fill the whole first look: look 4x deeper until k groups or the end
                while len(self.duplicates.first_per_group(hits)) < k and fetch < table.n_vectors:
                    fetch *= 4
                    hits = self._hits(con, ranking, table, query, fetch)
                hits = self.duplicates.first_per_group(hits)
            hits = best_per_file(hits, k) if group_by_file else hits[:k]
            return neighbouring_chunks(con, hits, context)
        except duckdb.Error as exc:
            raise damaged(f"the vector database {self.db_path}", exc) from None

    def _hits(self, con, ranking: Ranking, table: EncoderTable, query: np.ndarray, fetch: int) -> list[SearchHit]:
        hits = hits_of(con, ranking.ranked(self.served, table, query, fetch), table.encoder_key)
        return [h for h in hits if ranking.modality is None or h.modality == ranking.modality]

    def _chunk_standing_for(self, con: duckdb.DuckDBPyConnection, table: EncoderTable, like: str) -> str:
        """``like`` as a chunk id: a chunk id as it is; a served file's path, its first chunk in reading
        order with a vector in the table (an item's, for a fused encoder). The path is only looked up,
        never touched on disk (it may come from a request)."""
        if CHUNK_ID.fullmatch(like):
            return like
        chunk_ids = con.execute(
            """SELECT c.chunk_id FROM paths p JOIN chunks c USING (file_id)
               WHERE p.path = ? AND p.status = 'ok' ORDER BY c.position""",
            [os.path.abspath(os.path.expanduser(like))],
        ).fetchall()
        for (chunk_id,) in chunk_ids:
            try:
                self.served.vector(table, chunk_id)
                return chunk_id
            except KeyError:
                continue
        raise KeyError(f"{like}: no served file or chunk with a vector in {table.encoder_key}")


def _query_modality(con: duckdb.DuckDBPyConnection, text, image, audio, like: str | None) -> str | None:
    """What kind of thing the query is (None for a bare vector: it could be anything)."""
    if like is not None:
        return chunk_details(con, [like])[like]["modality"]
    return next((m for m, q in (("text", text), ("image", image), ("audio", audio)) if q is not None), None)


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
