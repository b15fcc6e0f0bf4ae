"""Turn one ingested file into chunk rows, whatever its kind: images here, documents in
documents.py, videos and audio in recordings.py."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

from mm_assets.chunking.documents import chunk_pdf, chunk_text
from mm_assets.chunking.recordings import chunk_audio, chunk_video_file
from mm_assets.chunking.rows import FileChunks
from mm_assets.chunking.text import TextChunker
from mm_assets.formats import BadFile, failure_reason
from mm_assets.formats.reading import Boundary, read_ingested_file
from mm_assets.formats.text import decode_text
from mm_assets.store.tables import ITEM_ROLE


def chunk_file(
    f: dict, chunker: TextChunker | None, params: dict, *, boundary: Boundary, max_pixels: int, max_bytes: int
) -> FileChunks:
    """The chunks of one ``raw_files`` row (an ingested file whose status is ok). ``chunker``: None
    only where no file has text (images and audio need none). ``boundary``: the batch's source
    folders, the only place the files a document refers to are read from."""
    kind, file_id = f["kind"], f["file_id"]
    if kind == "image":
        return chunk_image(file_id, params["image"], f.get("phash"), f.get("caption"))
    if kind == "audio":
        return chunk_audio(file_id, f["duration"], params["audio"])
    if kind == "video":
        return chunk_video_file(f, chunker, params["video"], boundary)
    data = read_ingested_file(f["path"], file_id, max_bytes)
    if kind == "text":
        text = decode_text(data)[0]
        return chunk_text(
            file_id, text, f["path"], chunker, boundary=boundary, max_pixels=max_pixels, max_bytes=max_bytes
        )
    if kind == "document":
        return chunk_pdf(file_id, data, chunker, params["document"], max_pixels=max_pixels)
    raise BadFile(f"no chunker for files of kind {kind!r}")


def chunk_image(file_id: str, params: dict, phash: int | None = None, caption: str | None = None) -> FileChunks:
    """The whole image (with the perceptual hash ingest computed), plus an n×n grid of tiles when
    configured (bbox as fractions of the image); with ``items``, a captioned image is also an item:
    an image chunk carrying its caption, which fused encoders embed as one (and only they)."""
    # Ids from the geometry alone: turning items on leaves the other chunks' ids (and vectors) as they are.
    chunks = FileChunks(file_id, "image", {"tiles": params["tiles"]})
    chunks.add("image", "image", bbox=[0.0, 0.0, 1.0, 1.0], phash=phash)
    n = params["tiles"]
    for i in range(n * n if n else 0):
        x, y = i % n, i // n
        chunks.add("image", "tile", bbox=[x / n, y / n, (x + 1) / n, (y + 1) / n])
    if params.get("items") and caption and caption.strip():
        # The caption is part of the item's identity: an edited caption is a new item.
        chunks.add("image", ITEM_ROLE, content=caption, text=caption, bbox=[0.0, 0.0, 1.0, 1.0])
    return chunks


@contextmanager
def time_limit(seconds: float):
    """BadFile when the block runs longer than ``seconds`` (checked between Python bytecodes, so a
    decoder's C call finishes first). Signals reach only the main thread, where Dagster runs a step;
    elsewhere the block runs unbounded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise BadFile(f"chunking took longer than {seconds:g} s (max_seconds_per_file); stopped")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class BatchChunks:
    rows: list[dict] = field(default_factory=list)  # the chunks of every file, file by file
    failures: list[dict] = field(default_factory=list)  # {path, file_id, reason}: files that gave no chunks
    problems: list[dict] = field(default_factory=list)  # {path, problem}: parts of files left out


def chunk_batch(
    files: list[dict],
    chunker: TextChunker | None,
    params: dict,
    *,
    boundary: Boundary,
    max_pixels: int,
    max_bytes: int,
    max_seconds: float,
    progress: Callable[[], None],
) -> BatchChunks:
    """The chunks of a batch's ingested files; a file that fails, or takes more than ``max_seconds``,
    costs only itself."""
    out = BatchChunks()
    for f in files:
        try:
            with time_limit(max_seconds):
                found = chunk_file(f, chunker, params, boundary=boundary, max_pixels=max_pixels, max_bytes=max_bytes)
            if not found.rows:
                raise BadFile("nothing to search: the file yields no chunks (no text, no images)")
            out.rows.extend(found.rows)
            out.problems += [{"path": f["path"], "problem": p} for p in found.problems]
        except Exception as exc:
            out.failures.append({"path": f["path"], "file_id": f["file_id"], "reason": failure_reason(exc)})
        progress()
    return out
