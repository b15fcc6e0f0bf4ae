"""Inspect one file: hash its bytes, check its content matches its claimed type, describe it."""

from __future__ import annotations

import os

import pyarrow as pa

from mm_assets.ingest import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    PDF_EXTENSIONS,
    VIDEO_EXTENSIONS,
    BadFile,
    failure_reason,
)
from mm_assets.ingest.discover import FoundFile
from mm_assets.ingest.images import decode_rgb, open_image
from mm_assets.ingest.media import describe_media
from mm_assets.ingest.pdf import describe_pdf
from mm_assets.ingest.reading import file_id_of, file_id_of_path, read_file_bytes
from mm_assets.ingest.text import decode_text

_TEXT_FORMATS = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}

# Validation decodes at reduced JPEG scale: enough to find truncation, far cheaper than a full decode.
_VALIDATION_SIDE = 64


def _describe_other_content(data: bytes) -> str:
    try:
        open_image(data, max_pixels=2**62)
        return "image data"
    except BadFile:
        pass
    try:
        decode_text(data)
        return "text"
    except BadFile:
        return "unrecognised binary data"


def inspect_file(entry: FoundFile, *, max_image_pixels: int, max_file_bytes: int) -> dict:
    """One row of ``raw_files``: status 'ok' with a description, or 'quarantined' with a reason."""
    row = {
        "path": entry.path,
        "size": entry.size,
        "mtime_ns": entry.mtime_ns,
        "file_id": None,
        "modality": None,
        "format": None,
        "encoding": None,
        "width": None,
        "height": None,
        "pages": None,
        "duration": None,
        "status": "ok",
        "reason": None,
    }
    ext = os.path.splitext(entry.path)[1].lower()
    try:
        if ext in VIDEO_EXTENSIONS or ext in AUDIO_EXTENSIONS:
            # Streamed from disk, never held whole: no size limit (a recording may be larger than memory).
            kind = "video" if ext in VIDEO_EXTENSIONS else "audio"
            row.update(file_id=file_id_of_path(entry.path), modality=kind, format=ext.lstrip("."))
            row["size"] = os.path.getsize(entry.path)
            if not row["size"]:
                raise BadFile("empty file (0 bytes)")
            row.update(describe_media(entry.path, kind))
            return row
        data = read_file_bytes(entry.path, max_file_bytes)
        if not data:
            raise BadFile("empty file (0 bytes)")
        row["size"] = len(data)
        row["file_id"] = file_id_of(data)
        if ext in IMAGE_EXTENSIONS:
            row["modality"] = "image"
            try:
                header = open_image(data, max_image_pixels)
            except BadFile as exc:
                if str(exc) == "not a recognised image format":
                    raise BadFile(f"named {ext} but the content is {_describe_other_content(data)}") from None
                raise
            row.update(format=header.format, width=header.width, height=header.height)
            decode_rgb(data, max_image_pixels, min_side=_VALIDATION_SIDE)
        elif ext in PDF_EXTENSIONS:
            row.update(modality="document", format="pdf", **describe_pdf(data))
        else:
            row["modality"] = "text"
            try:
                text, encoding = decode_text(data)
            except BadFile as exc:
                other = _describe_other_content(data)
                raise BadFile(
                    f"named {ext} but the content is {other}" if other == "image data" else str(exc)
                ) from None
            if not text.strip():
                raise BadFile("text file has no visible characters")
            row.update(format=_TEXT_FORMATS.get(ext, "text"), encoding=encoding)
    except Exception as exc:
        row.update(status="quarantined", reason=failure_reason(exc))
    return row


RAW_FILES_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("file_id", pa.string()),
        ("modality", pa.string()),
        ("format", pa.string()),
        ("encoding", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("pages", pa.int32()),  # PDFs
        ("duration", pa.float64()),  # video and audio, seconds
        ("caption", pa.string()),  # images only: from a sidecar file or a captions manifest
        ("label", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("batch", pa.string()),
        ("ingested_at", pa.float64()),
    ]
)


def rejected_row(path: str, reason: str) -> dict:
    return {"path": path, "status": "quarantined", "reason": reason}
