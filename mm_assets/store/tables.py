"""Every table the product writes, in one place: the Parquet shards (the source of truth), the
discovery state, and the DuckDB serving file derived from them.

Vocabulary used across the code:
- a file's **kind** (``raw_files.kind``): image, text, document (PDF), video or audio;
- a chunk's **modality** (``chunks.modality``): image, text or audio, what an encoder embeds;
- a chunk's **role** (``chunks.role``): what it is in its file (window, figure, caption, frame, item, ...);
- an **encoder key** (``<name>_<fingerprint>``): one configuration of one encoder, see
  ``mm_assets/encoders/identity.py``; its vectors live in the table ``emb_<encoder key>``.

Shards written before a column was renamed keep reading: ``RENAMED`` maps old names to new ones, and
both the Arrow readers (``upgrade``) and DuckDB scans (``read_schema`` + ``select_list``) apply it.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

MODALITIES = ("image", "text", "audio")
# A chunk's modality as one byte per row of a serving matrix (filtering without a join).
MODALITY_CODES = {"image": 0, "text": 1, "audio": 2}
FILE_KINDS = ("image", "text", "document", "video", "audio")
# A captioned image as one item (image + caption): the chunks fused encoders embed, and only they.
ITEM_ROLE = "item"

# Assets that write shards, by the folder name under ``shards/``.
RAW_FILES = "raw_files"
CHUNKS = "chunks"
EMBEDDINGS = "embeddings"
CHUNK_FAILURES = "chunk_failures"  # files that passed inspection but gave no chunks, with the reason

RAW_FILES_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("file_id", pa.string()),  # content address (blake2b of the bytes)
        ("kind", pa.string()),  # image | text | document | video | audio
        ("format", pa.string()),
        ("encoding", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("pages", pa.int32()),  # PDFs
        ("duration", pa.float64()),  # video and audio, seconds
        ("caption", pa.string()),  # images only: from a sidecar file or a captions manifest
        ("label", pa.string()),
        ("phash", pa.int64()),  # images only: perceptual hash (formats/images.perceptual_hash)
        ("status", pa.string()),  # ok | quarantined | deleted (a tombstone: the path is gone)
        ("reason", pa.string()),  # why it was quarantined
        ("change", pa.string()),  # added | edited | dependency | moved | deleted | moved_away
        ("batch", pa.string()),
        ("ingested_at", pa.float64()),
    ]
)

CHUNKS_SCHEMA = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("file_id", pa.string()),
        ("modality", pa.string()),  # image | text | audio: what an encoder embeds
        ("role", pa.string()),  # what the chunk is in its file: window, image, tile, figure, caption, ...
        ("position", pa.int32()),  # reading order within the file
        ("text", pa.string()),
        ("heading", pa.string()),
        ("section", pa.int32()),  # section (between headings) or PDF page the chunk belongs to
        ("char_start", pa.int64()),  # text range (in the page's text for PDFs, the extracted text for HTML)
        ("char_end", pa.int64()),
        ("n_tokens", pa.int32()),
        ("bbox", pa.list_(pa.float32(), 4)),  # x0, y0, x1, y1 as fractions of the (EXIF-oriented) image or page
        ("page", pa.int32()),  # 1-based PDF page
        ("t_start", pa.float64()),  # seconds into a video or audio file
        ("t_end", pa.float64()),
        ("linked_chunk_id", pa.string()),  # alt text and captions: the image chunk they describe
        ("phash", pa.int64()),  # whole images and video frames: perceptual hash, for near-duplicates
        ("media", pa.binary()),  # JPEG of an image cut out of the file (figure, frame, page, linked image)
        ("batch", pa.string()),  # the batch that chunked it: a file's chunks come from its latest batch
    ]
)

CHUNK_FAILURES_SCHEMA = pa.schema(
    [("path", pa.string()), ("file_id", pa.string()), ("reason", pa.string()), ("batch", pa.string())]
)

# What discovery has batched already: path -> (size, mtime), the batch, and the files it depends on
# with one number for their state (ingest/dependencies.py), in the store's ``state/`` folder.
SEEN_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("batch", pa.string()),
        ("dependencies", pa.list_(pa.string())),
        ("dependency_state", pa.int64()),
        ("dependency_content", pa.int64()),
    ]
)

# What each column means, wherever it appears (a name means one thing in every table): the column
# descriptions of the assets' `dagster/column_schema` metadata.
COLUMN_DESCRIPTIONS = {
    "path": "absolute path of the file in its source folder",
    "size": "bytes",
    "mtime_ns": "modification time, nanoseconds since the epoch",
    "file_id": "content address of the file (blake2b of its bytes)",
    "kind": "image | text | document (PDF) | video | audio",
    "format": "container or encoding found by sniffing the content (never the extension)",
    "encoding": "text encoding",
    "width": "pixels",
    "height": "pixels",
    "pages": "PDF pages",
    "duration": "seconds of video or audio",
    "caption": "the image's caption, from a sidecar file or a captions manifest",
    "label": "the caption's label: images that share it are relevant to each other's captions",
    "phash": "64-bit perceptual hash of an image or video frame: near-duplicates differ in few bits",
    "status": "ok | quarantined | deleted (a tombstone: the path is gone)",
    "reason": "why the file is quarantined",
    "change": "added | edited | dependency | moved | deleted | moved_away, as this batch saw the path",
    "batch": "the ingest batch (a dynamic partition) that wrote the row",
    "ingested_at": "seconds since the epoch",
    "chunk_id": "hash of (file id, chunker version, parameters, position, outside content)",
    "modality": "image | text | audio: what an encoder embeds",
    "role": "what the chunk is in its file: window, image, tile, figure, caption, frame, ...",
    "position": "reading order within the file",
    "text": "the chunk's text",
    "heading": "the heading of the chunk's section",
    "section": "section (between headings) or PDF page the chunk belongs to",
    "char_start": "start of the chunk's text range in the file's text",
    "char_end": "end of the chunk's text range",
    "n_tokens": "tokens of the text, special tokens included",
    "bbox": "x0, y0, x1, y1 as fractions of the image or page",
    "page": "1-based PDF page",
    "t_start": "seconds into a video or audio file",
    "t_end": "seconds into a video or audio file",
    "linked_chunk_id": "alt text and captions: the image chunk they describe",
    "media": "JPEG of an image cut out of the file (figure, frame, page, linked image)",
    "embedding": "unit-length vector of the encoder (cosine distance = 1 - dot product)",
}

# Old column name -> new one, per shard folder (shards are immutable: old ones are read as they are).
RENAMED = {RAW_FILES: {"modality": "kind"}, CHUNKS: {"source": "role"}}


def embeddings_schema(dim: int) -> pa.Schema:
    return pa.schema([("chunk_id", pa.string()), ("embedding", pa.list_(pa.float32(), dim))])


def upgrade(table: pa.Table, folder: str) -> pa.Table:
    """Shards as read from disk (one, or several concatenated), with renamed columns under their
    current names."""
    for old, new in RENAMED.get(folder, {}).items():
        if old not in table.column_names:
            continue
        if new in table.column_names:  # shards of both ages concatenated: one column each
            merged = pc.coalesce(table.column(new), table.column(old))
            table = table.set_column(table.column_names.index(new), new, merged).drop_columns([old])
        else:
            table = table.rename_columns([new if name == old else name for name in table.column_names])
    return table


def read_schema(schema: pa.Schema, folder: str) -> pa.Schema:
    """The schema to scan a folder's shards with: the current columns plus the old names, so that a
    shard of either age fills its own (the other reads as NULL)."""
    for old in RENAMED.get(folder, {}):
        schema = schema.append(pa.field(old, schema.field(RENAMED[folder][old]).type))
    return schema


def select_list(schema: pa.Schema, folder: str, exclude: tuple[str, ...] = ()) -> str:
    """SQL columns over a ``read_schema`` scan: each renamed column as coalesce(new, old)."""
    renamed = {new: old for old, new in RENAMED.get(folder, {}).items()}
    return ", ".join(
        f"coalesce({name}, {renamed[name]}) AS {name}" if name in renamed else name
        for name in schema.names
        if name not in exclude
    )


# --- the vector database (vectors/: DuckDB segments) ---------------------------------------------
# file_versions, paths, files, chunks and quarantine are made from the shards with the columns above
# (store/vector_db.py, in segments: store/segments.py); these are the tables with a shape of their own.


def embedding_table_name(encoder_key: str) -> str:
    """The table (and serving matrix) of one encoder configuration's vectors."""
    return f"emb_{encoder_key}"


ENCODERS_DDL = """
    CREATE TABLE encoders (encoder_key VARCHAR PRIMARY KEY, name VARCHAR, fingerprint VARCHAR,
        table_name VARCHAR, model_id VARCHAR, revision VARCHAR, embedding_dim INTEGER, dtype VARCHAR,
        is_current BOOLEAN, is_default BOOLEAN, n_vectors BIGINT, hnsw BOOLEAN, metadata JSON)"""

# Where a chunk sits in its file, and what search returns per chunk.
CHUNK_PLACE_COLUMNS = ("role", "position", "section", "page", "char_start", "char_end", "bbox", "t_start", "t_end")
CHUNK_DETAIL_COLUMNS = ("chunk_id", "file_id", "modality", "text", "heading", *CHUNK_PLACE_COLUMNS, "linked_chunk_id")

# --- evaluation history (evaluations.duckdb: not derived, kept across rebuilds) -----------------

RETRIEVAL_METRICS = ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10", "chance@1", "n_queries", "n_gallery")
# Columns added since the table was first written: added to an older history file when it is opened.
RETRIEVAL_EVAL_ADDED = {"images@10": "DOUBLE"}  # mixed tasks: the share of images in the top 10
RETRIEVAL_EVAL_DDL = """
    CREATE TABLE IF NOT EXISTS retrieval_eval (
        evaluated_at TIMESTAMP, run_id VARCHAR, encoder VARCHAR, encoder_key VARCHAR, fingerprint VARCHAR,
        model_id VARCHAR, revision VARCHAR, task VARCHAR, "recall@1" DOUBLE, "recall@5" DOUBLE,
        "recall@10" DOUBLE, mrr DOUBLE, "ndcg@10" DOUBLE, "chance@1" DOUBLE, n_queries INTEGER,
        n_gallery INTEGER)"""
