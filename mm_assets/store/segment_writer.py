"""Writing one segment: the SQL that decides what is live, run over the shards and the served
generation, and the segment's files (rows, BM25 index, serving matrices, optional HNSW) written
aside and published as a new generation (segments.py). vector_db.py decides when and from what."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from mm_assets.store import tables
from mm_assets.store.duck import VectorDBError, load_fts, load_vss
from mm_assets.store.layout import Layout, segment_dir, segment_path
from mm_assets.store.matrices import write_matrices
from mm_assets.store.segments import SEGMENT_TABLES, Generation, Segment, ServingSpec, attach, publish, stamps_of
from mm_assets.store.shards import ShardStore
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
    embeddings_schema,
)

# Segments smaller than this are searched exactly even with HNSW on: a product over 10k vectors takes
# well under a millisecond, while an index costs seconds to build.
HNSW_MIN_ROWS = 10_000
# How the full-text index cuts text: lower case, accents stripped, English stop words and Porter
# stems, and digits kept (DuckDB's default drops them, and with them every code and part number).
TEXT_INDEX_OPTIONS = (
    "stemmer = 'porter', stopwords = 'english', ignore = '(\\.|[^a-z0-9])+', strip_accents = 1, lower = 1"
)


def index_text(segment_file: Path) -> None:
    """A BM25 index of a segment's text chunks, inside the segment (built once, with it: an update
    indexes only the rows it adds). Built on the file opened directly: DuckDB's full-text macros
    only resolve in the database they were created in (searched with USE, see store/served.py)."""
    with duckdb.connect(str(segment_file)) as con:
        load_fts(con)
        con.execute(f"PRAGMA create_fts_index('chunks', 'chunk_id', 'text', {TEXT_INDEX_OPTIONS})")


# --- the SQL that decides what is live ----------------------------------------------------------
# Each takes its sources by name, so a rebuild (sources = every shard), an update (the new shards
# beside the served rows) and a compaction (the served rows) share it.

LATEST_PER_PATH = """
    SELECT path, arg_max(file_id, ingested_at) AS file_id, arg_max(status, ingested_at) AS status,
           arg_max(reason, ingested_at) AS reason, arg_max(batch, ingested_at) AS batch,
           max(ingested_at) AS ingested_at
    FROM {versions} GROUP BY path"""

# A file id live under several paths (a copy) is served under its most recently ingested path; its
# batch is the one whose chunks it has.
FILES = """
    SELECT v.file_id, arg_max(v.path, v.ingested_at) AS path, any_value(v.kind) AS kind,
           any_value(v.format) AS format, any_value(v.encoding) AS encoding, any_value(v.width) AS width,
           any_value(v.height) AS height, any_value(v.pages) AS pages, any_value(v.duration) AS duration,
           any_value(v.size) AS size, max(v.ingested_at) AS ingested_at,
           arg_max(v.caption, v.ingested_at) AS caption, arg_max(v.label, v.ingested_at) AS label,
           arg_max(v.batch, v.ingested_at) AS batch
    FROM {versions} v JOIN {paths} l ON v.path = l.path AND v.file_id = l.file_id
    WHERE l.status = 'ok' AND v.file_id IN (SELECT file_id FROM {file_ids}) GROUP BY v.file_id"""

# A path is quarantined while its latest version is, or while that version's chunking failed: every
# file ends either searchable or here, with its reason.
QUARANTINE = """
    SELECT path, reason, batch, ingested_at FROM {paths}
    WHERE status = 'quarantined' AND path IN (SELECT path FROM {path_set})
    UNION ALL
    SELECT l.path, any_value(f.reason), any_value(f.batch), l.ingested_at
    FROM {paths} l JOIN {failures} f ON f.path = l.path AND f.file_id = l.file_id AND f.batch = l.batch
    WHERE l.status = 'ok' AND l.path IN (SELECT path FROM {path_set}) GROUP BY l.path, l.ingested_at"""

# A file's chunks are those of its batch: when only a file it uses changed (a linked image, its
# subtitles), older chunks of the same file id are stale. Shards written before chunks recorded their
# batch match any batch.
CHUNKS_OF_FILES = """
    SELECT DISTINCT ON (chunk_id) {columns} FROM {chunk_shards} c
    WHERE EXISTS (SELECT 1 FROM {files} f WHERE f.file_id = c.file_id AND (c.batch IS NULL OR c.batch = f.batch))
    ORDER BY chunk_id"""


class SegmentWriter:
    """Writes one new segment (and the dead list beside it) in a private in-memory connection that
    sees the served generation through the same views readers use."""

    def __init__(self, layout: Layout, records: dict[str, dict], spec: ServingSpec, current: Generation | None):
        self.layout, self.store, self.records, self.spec, self.current = layout, layout.store, records, spec, current
        self.root = layout.db_path
        self.number = (current.number + 1) if current else 1
        self.name = f"{self.number:08d}-{uuid.uuid4().hex[:6]}"
        self.con = duckdb.connect(":memory:")
        if current is not None:
            attach(self.con, self.root, current)
        self.added: dict[str, int] = {}
        self.deleted: dict[str, int] = {}
        self.hnsw = 0.0
        self.hnsw_tables: list[str] = []
        self.live: dict[str, int] = {}  # rows live after this segment, when known without counting
        self.dead: list[tuple[str, str, int]] = []
        self.checks: dict[str, dict] = {}
        self.tmp = self.root / "segments" / f".{self.name}.building"

    # --- sources ------------------------------------------------------------------------------

    def _register(self, name: str, keys: list[str], schema: pa.Schema, folder: str | None) -> None:
        """Shards as a lazily scanned view; renamed columns under their current names."""
        scan_schema = tables.read_schema(schema, folder) if folder else schema
        scan = self.store.dataset(keys, scan_schema) if keys else scan_schema.empty_table()
        self.con.register(f"{name}_scan", scan)
        columns = tables.select_list(schema, folder) if folder else "*"
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {columns} FROM {name}_scan")

    def _shards(self, keys: list[str], folder: str, encoder_key: str | None = None) -> list[str]:
        prefix = ShardStore.shard_dir(folder, encoder_key) + "/"
        return [k for k in keys if k.startswith(prefix) and "/" not in k[len(prefix) :]]

    def _batches_of(self, folder: str, batches_sql: str) -> list[str]:
        """Shards of ``folder`` for the batches the query names (a few: those of the change)."""
        wanted = {b for (b,) in self.con.execute(batches_sql).fetchall() if b}
        return [self.store.shard(folder, b) for b in sorted(wanted) if self.store.exists(self.store.shard(folder, b))]

    def _embedding_sources(self, keys: list[str]) -> None:
        for key in self.records:
            table = embedding_table_name(key)
            self._register(f"new_{table}", self._shards(keys, EMBEDDINGS, key), self._emb_schema(key), None)

    def _emb_schema(self, key: str) -> pa.Schema:
        return embeddings_schema(int(self.records[key]["embedding_dim"]))

    # --- the three ways to a segment ------------------------------------------------------------

    def rebuild(self, keys: list[str]) -> None:
        """Everything from every shard."""
        raw = self._shards(keys, RAW_FILES)
        if not raw or not self._shards(keys, CHUNKS):
            raise VectorDBError("nothing ingested yet: no raw_files/chunks shards under " + self.store.url)
        c = self.con
        self._register("raw_versions", raw, RAW_FILES_SCHEMA, RAW_FILES)
        c.execute("CREATE TEMP TABLE src_file_versions AS SELECT * FROM raw_versions")
        c.execute(f"CREATE TEMP TABLE all_paths AS {LATEST_PER_PATH.format(versions='src_file_versions')}")
        c.execute("CREATE TEMP TABLE src_paths AS SELECT * FROM all_paths WHERE status != 'deleted'")
        c.execute("CREATE TEMP VIEW all_file_ids AS SELECT file_id FROM src_paths")
        c.execute(
            "CREATE TEMP TABLE src_files AS "
            + FILES.format(versions="src_file_versions", paths="src_paths", file_ids="all_file_ids")
        )
        self._register("failures", self._shards(keys, CHUNK_FAILURES), CHUNK_FAILURES_SCHEMA, None)
        c.execute(
            "CREATE TEMP TABLE src_quarantine AS "
            + QUARANTINE.format(paths="src_paths", path_set="src_paths", failures="failures")
        )
        self._register("chunk_sources", self._shards(keys, CHUNKS), CHUNKS_SCHEMA, CHUNKS)
        c.execute("CREATE TEMP TABLE src_chunks AS " + self._chunks_sql("chunk_sources", "src_files"))
        c.execute("CREATE TEMP VIEW chunks_after AS SELECT * FROM src_chunks")
        for key in self.records:
            table = embedding_table_name(key)
            self._register(f"all_{table}", self._shards(keys, EMBEDDINGS, key), self._emb_schema(key), None)
            c.execute(f"CREATE TEMP VIEW src_{table} AS {self._vectors_sql(key, f'all_{table}', 'src_chunks')}")
        self._write_segment()

    def compact(self, merged: list[str]) -> None:
        """The live rows of the ``merged`` segments (and their history: file_versions is append-only)."""
        c = self.con
        names = ", ".join(f"'{name}'" for name in merged)
        for table in [*SEGMENT_TABLES, *map(embedding_table_name, self.records)]:
            rows = f"{table}_stored" if table == "file_versions" else f"{table}_located"
            c.execute(
                f"CREATE TEMP VIEW src_{table} AS SELECT * EXCLUDE (_seg, _rid) FROM {rows} WHERE _seg IN ({names})"
            )
        c.execute("CREATE TEMP VIEW chunks_after AS SELECT * FROM chunks")
        # The merged segments leave the generation with their dead rows; nothing becomes live or dead.
        kept = tuple(s for s in self.current.segments if s.name not in merged)
        self.live = self.current.live
        self.current = replace(self.current, segments=kept)
        self._write_segment()

    def apply(self, keys: list[str]) -> None:
        """The shards in ``keys`` (new since the served generation) on top of it."""
        c = self.con
        self._register("new_versions", self._shards(keys, RAW_FILES), RAW_FILES_SCHEMA, RAW_FILES)
        self._register("new_chunks", self._shards(keys, CHUNKS), CHUNKS_SCHEMA, CHUNKS)
        self._register("new_failures", self._shards(keys, CHUNK_FAILURES), CHUNK_FAILURES_SCHEMA, None)
        self._embedding_sources(keys)
        c.execute("CREATE TEMP TABLE src_file_versions AS SELECT * FROM new_versions")
        # Paths: the latest row of each path the new shards mention replaces its served row.
        c.execute(f"CREATE TEMP TABLE touched_paths AS {LATEST_PER_PATH.format(versions='src_file_versions')}")
        c.execute("CREATE TEMP TABLE src_paths AS SELECT * FROM touched_paths WHERE status != 'deleted'")
        self._kill("paths", "path IN (SELECT path FROM touched_paths)")
        c.execute("""CREATE TEMP VIEW paths_after AS
            SELECT * FROM paths WHERE path NOT IN (SELECT path FROM touched_paths) UNION ALL BY NAME
            SELECT * FROM src_paths""")
        c.execute("""CREATE TEMP VIEW versions_after AS
            SELECT * FROM file_versions UNION ALL BY NAME SELECT * FROM src_file_versions""")
        # Files: every file id a touched path held or holds, or newly chunked, is decided again.
        c.execute("""CREATE TEMP TABLE touched_files AS
            SELECT file_id FROM paths WHERE path IN (SELECT path FROM touched_paths) AND file_id IS NOT NULL
            UNION SELECT file_id FROM touched_paths WHERE file_id IS NOT NULL
            UNION SELECT file_id FROM new_chunks
            UNION SELECT file_id FROM new_failures WHERE file_id IS NOT NULL""")
        c.execute(
            "CREATE TEMP TABLE src_files AS "
            + FILES.format(versions="versions_after", paths="paths_after", file_ids="touched_files")
        )
        self._kill("files", "file_id IN (SELECT file_id FROM touched_files)")
        # Chunks: those of each touched file's batch; a chunk already served stays where it is.
        batches = "SELECT DISTINCT batch FROM src_files"
        self._register("chunk_sources", self._batches_of(CHUNKS, batches), CHUNKS_SCHEMA, CHUNKS)
        c.execute("CREATE TEMP TABLE wanted_chunks AS " + self._chunks_sql("chunk_sources", "src_files"))
        c.execute("CREATE TEMP TABLE src_chunks AS SELECT * FROM wanted_chunks ANTI JOIN chunks USING (chunk_id)")
        c.execute("""CREATE TEMP TABLE gone_chunks AS
            SELECT chunk_id FROM chunks WHERE file_id IN (SELECT file_id FROM touched_files)
            AND chunk_id NOT IN (SELECT chunk_id FROM wanted_chunks)""")
        self._kill("chunks", "chunk_id IN (SELECT chunk_id FROM gone_chunks)")
        c.execute("""CREATE TEMP VIEW chunks_after AS
            SELECT * FROM chunks WHERE chunk_id NOT IN (SELECT chunk_id FROM gone_chunks) UNION ALL BY NAME
            SELECT * FROM src_chunks""")
        # Quarantine: every touched path, and every path a new failure names.
        c.execute(
            "CREATE TEMP TABLE touched_quarantine AS SELECT path FROM touched_paths UNION SELECT path FROM new_failures"
        )
        batches = "SELECT DISTINCT batch FROM paths_after WHERE path IN (SELECT path FROM touched_quarantine)"
        self._register("failure_sources", self._batches_of(CHUNK_FAILURES, batches), CHUNK_FAILURES_SCHEMA, None)
        c.execute(
            "CREATE TEMP TABLE src_quarantine AS "
            + QUARANTINE.format(paths="paths_after", path_set="touched_quarantine", failures="failure_sources")
        )
        self._kill("quarantine", "path IN (SELECT path FROM touched_quarantine)")
        for key in self.records:
            self._apply_vectors(key)
        self._write_segment()

    def _apply_vectors(self, key: str) -> None:
        """Vectors for the new chunks this encoder embeds, and for served chunks that had none yet
        (their batch embedded later): from the new shards, else from rows kept in older segments
        (a file moved away and back), else from the encoder's shards (after a compaction dropped them)."""
        c, table = self.con, embedding_table_name(key)
        modalities = ", ".join(f"'{m}'" for m in self.records[key]["modalities"])
        self._kill(table, "chunk_id IN (SELECT chunk_id FROM gone_chunks)")
        c.execute(f"""CREATE TEMP TABLE need_{table} AS
            SELECT chunk_id FROM src_chunks WHERE modality IN ({modalities})
            UNION SELECT chunk_id FROM new_{table} WHERE chunk_id IN (SELECT chunk_id FROM chunks)
              AND chunk_id NOT IN (SELECT chunk_id FROM gone_chunks)
              AND chunk_id NOT IN (SELECT chunk_id FROM {table})""")
        c.execute(f"""CREATE TEMP TABLE kept_{table} AS
            SELECT chunk_id, embedding FROM new_{table} WHERE chunk_id IN (SELECT chunk_id FROM need_{table})
            UNION ALL SELECT chunk_id, embedding FROM {table}_stored
            WHERE chunk_id IN (SELECT chunk_id FROM need_{table})""")
        missing = c.execute(
            f"SELECT count(*) FROM need_{table} WHERE chunk_id NOT IN (SELECT chunk_id FROM kept_{table})"
        ).fetchone()[0]
        if missing:  # rare: read the encoder's shards for them
            self._register(
                f"every_{table}", self.store.list(ShardStore.shard_dir(EMBEDDINGS, key)), self._emb_schema(key), None
            )
            c.execute(f"""INSERT INTO kept_{table} SELECT chunk_id, embedding FROM every_{table}
                WHERE chunk_id IN (SELECT chunk_id FROM need_{table})""")
        c.execute(f"CREATE TEMP TABLE src_{table} AS {self._vectors_sql(key, f'kept_{table}', f'need_{table}')}")

    def _chunks_sql(self, shards: str, files: str) -> str:
        columns = tables.select_list(CHUNKS_SCHEMA, "", exclude=("media",))
        return CHUNKS_OF_FILES.format(columns=columns, chunk_shards=shards, files=files)

    def _vectors_sql(self, key: str, source: str, chunk_ids: str) -> str:
        """One vector per wanted chunk. Two batches may have embedded the same chunk (run at once):
        keep one copy; the check reads ids only, so the common case streams the vectors once."""
        dim = int(self.records[key]["embedding_dim"])
        wanted = f"chunk_id IN (SELECT chunk_id FROM {chunk_ids})"
        copies = self.con.execute(f"SELECT count(*) - count(DISTINCT chunk_id) FROM {source} WHERE {wanted}").fetchone()
        if not copies[0]:
            return f"SELECT chunk_id, embedding::FLOAT[{dim}] AS embedding FROM {source} WHERE {wanted}"
        return f"""SELECT chunk_id, embedding::FLOAT[{dim}] AS embedding FROM (
                       SELECT *, row_number() OVER (PARTITION BY chunk_id) AS copy FROM {source} WHERE {wanted})
                   WHERE copy = 1"""

    def _kill(self, table: str, condition: str) -> None:
        """Mark the served rows of ``table`` that match as dead in the new generation."""
        rows = self.con.execute(f"SELECT _seg, _rid FROM {table}_located WHERE {condition}").fetchall()
        self.dead += [(table, seg, rid) for seg, rid in rows]
        self.deleted[table] = self.deleted.get(table, 0) + len(rows)

    # --- writing ------------------------------------------------------------------------------

    def _write_segment(self) -> None:
        c = self.con
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        c.execute(f"ATTACH '{self.tmp}' AS seg")
        # Vectors barely compress, and compressing them took most of a checkpoint's time.
        c.execute("SET force_compression = 'uncompressed'")
        # Vectors keep the order they are read in (sorting 2 KB rows costs more than the rest of the
        # update); each serving matrix has a sorted index of its ids instead.
        for table, key in [*SEGMENT_TABLES.items(), *((embedding_table_name(k), None) for k in self.records)]:
            order = f" ORDER BY {key}" if key else ""
            c.execute(f"CREATE TABLE seg.{table} AS SELECT * FROM src_{table}{order}")
            self.added[table] = c.execute(f"SELECT count(*) FROM seg.{table}").fetchone()[0]
            if table == "quarantine":
                # Search looks results up by id: point lookups through these indexes, not scans (built
                # before the vectors are written: measured 40x faster than after them).
                c.execute("CREATE INDEX chunks_by_id ON seg.chunks (chunk_id)")
                c.execute("CREATE INDEX files_by_id ON seg.files (file_id)")
                c.execute("CREATE INDEX paths_by_path ON seg.paths (path)")
        for key in self.records:
            self._check_vectors(key)
        matrices = self.tmp.with_suffix(".matrices")
        matrices.mkdir(exist_ok=True)
        for key in self.records:
            table = embedding_table_name(key)
            self._write_matrix(table, int(self.records[key]["embedding_dim"]), matrices)
            if self.spec.hnsw and self.added[table] >= HNSW_MIN_ROWS:
                t0 = time.perf_counter()
                load_vss(c)
                c.execute("SET hnsw_enable_experimental_persistence = true")
                c.execute(f"CREATE INDEX {table}_hnsw ON seg.{table} USING HNSW (embedding) WITH (metric = 'cosine')")
                self.hnsw += time.perf_counter() - t0
                self.hnsw_tables.append(table)
        c.execute("CHECKPOINT seg")
        c.execute("DETACH seg")
        index_text(self.tmp)

    def _check_vectors(self, key: str) -> None:
        """What must hold before readers see the segment (it is never published otherwise): every new
        vector has unit length, and no chunk has two vectors. A chunk without a vector (its embedding
        failed) is counted, not refused: one bad chunk must not stop the index."""
        c, table = self.con, embedding_table_name(key)
        modalities = ", ".join(f"'{m}'" for m in self.records[key]["modalities"])
        served = self.current is not None and self.current.segments and not self.live  # apply, not compact
        elsewhere = f"SELECT chunk_id FROM {table} WHERE chunk_id NOT IN (SELECT chunk_id FROM gone_chunks)"
        found = c.execute(f"""SELECT
            count(*) FILTER (WHERE NOT abs(array_inner_product(embedding, embedding) - 1) <= 1e-3),
            count(*) - count(DISTINCT chunk_id)
              + {f"(SELECT count(*) FROM seg.{table} WHERE chunk_id IN ({elsewhere}))" if served else 0},
            (SELECT count(*) FROM seg.chunks WHERE modality IN ({modalities})
               AND chunk_id NOT IN (SELECT chunk_id FROM seg.{table})
               {f"AND chunk_id NOT IN ({elsewhere})" if served else ""})
            FROM seg.{table}""").fetchone()
        figures = dict(zip(("not_unit_norm", "duplicate_vectors", "chunks_without_vector"), found, strict=True))
        self.checks[table] = {
            "new_vectors": self.added[table],
            "dim": int(self.records[key]["embedding_dim"]),
            **figures,
        }
        if figures["not_unit_norm"] or figures["duplicate_vectors"]:
            raise VectorDBError(
                f"{table}: not published: {figures['not_unit_norm']} vector(s) not of unit length or not finite, "
                f"{figures['duplicate_vectors']} chunk(s) with two vectors; the served generation is unchanged"
            )

    def _write_matrix(self, table: str, dim: int, folder: Path) -> None:
        """The segment's vectors as its serving matrices (store/matrices.py), in row order."""
        result = self.con.execute(f"SELECT rowid, chunk_id, embedding FROM seg.{table}").to_arrow_table()
        rows = result.column("rowid").to_numpy()
        if not np.array_equal(rows, np.arange(len(rows))):  # a scan returns rows in storage order
            raise VectorDBError(f"{table}: rows read out of order")
        flat = result.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        matrix = np.asarray(flat, dtype=np.float32).reshape(-1, dim)
        ids = np.asarray(result.column("chunk_id").to_pylist(), dtype=str)
        modality = self.con.execute(
            f"SELECT e.rowid, c.modality FROM seg.{table} e JOIN chunks_after c USING (chunk_id)"
        ).fetchall()
        if len(modality) != len(rows):
            raise VectorDBError(f"{table}: {len(rows) - len(modality)} vectors of chunks not served")
        codes = np.zeros(len(rows), dtype=np.uint8)
        for row, m in modality:
            codes[row] = MODALITY_CODES[m]
        write_matrices(folder, table, matrix, ids, codes)

    def publish(self, inputs: dict[str, str], log) -> Generation:
        """Move the segment into place, write the dead list, and point readers at the new generation."""
        c = self.con
        segment = Segment(self.name, dict(self.added), tuple(self.hnsw_tables))
        previous = self.current.segments if self.current else ()
        dead_file = None
        c.execute("CREATE OR REPLACE TEMP TABLE all_dead (tbl VARCHAR, seg VARCHAR, rid BIGINT)")
        if previous:  # dead rows of segments that stay (a compaction drops those of the merged ones)
            names = ", ".join(f"'{s.name}'" for s in previous)
            c.execute(f"INSERT INTO all_dead SELECT * FROM _dead WHERE seg IN ({names})")
        if self.dead:
            c.executemany("INSERT INTO all_dead VALUES (?, ?, ?)", self.dead)
        n_dead = c.execute("SELECT count(*) FROM all_dead").fetchone()[0]
        if n_dead:
            dead_file = f"{self.number:08d}-{uuid.uuid4().hex[:6]}.parquet"
            (self.root / "dead").mkdir(exist_ok=True)
            tmp = self.root / "dead" / f".{dead_file}.tmp"
            c.execute(f"COPY all_dead TO '{tmp}' (FORMAT parquet)")
            tmp.rename(self.root / "dead" / dead_file)
        self.tmp.with_suffix(".matrices").rename(segment_dir(self.root, self.name))
        self.tmp.rename(segment_path(self.root, self.name))
        written = [segment_path(self.root, self.name), *segment_dir(self.root, self.name).iterdir()]
        segment = replace(segment, stamps=stamps_of(self.root, written))
        live = self.live or self._live_counts()
        generation = Generation(
            number=self.number,
            segments=(*previous, segment),
            dead=dead_file,
            dead_rows=n_dead,
            inputs=dict(inputs),
            settings=self.spec.as_json(),
            encoders=tuple(self._encoder_rows(live)),
            live=live,
        )
        publish(self.root, generation)
        c.close()
        log(f"published generation {generation.number}: {len(generation.segments)} segment(s), {n_dead} dead rows")
        return generation

    def _live_counts(self) -> dict[str, int]:
        previous = self.current.live if self.current else {}
        return {
            table: previous.get(table, 0) + self.added.get(table, 0) - self.deleted.get(table, 0)
            for table in [*SEGMENT_TABLES, *map(embedding_table_name, self.records)]
        }

    def _encoder_rows(self, live: dict[str, int]) -> list[dict]:
        rows = []
        for key, record in sorted(self.records.items()):
            table = embedding_table_name(key)
            rows.append(
                {
                    "encoder_key": key,
                    "name": record["encoder"],
                    "fingerprint": record["fingerprint"],
                    "table_name": table,
                    "model_id": record["model_id"],
                    "revision": record["revision"],
                    "embedding_dim": int(record["embedding_dim"]),
                    "dtype": record["dtype"],
                    "is_current": self.spec.current.get(record["encoder"]) == key,
                    "is_default": key == self.spec.default_key,
                    "n_vectors": live[table],
                    "hnsw": self.spec.hnsw,
                    "metadata": json.dumps(record, sort_keys=True),
                }
            )
        return rows
