"""Inspect one file: hash its bytes, check its content matches its claimed type, describe it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from mm_assets.config import InspectionLimits
from mm_assets.formats import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    PDF_EXTENSIONS,
    VIDEO_EXTENSIONS,
    BadFile,
    failure_reason,
)
from mm_assets.formats.audio_video import describe_media
from mm_assets.formats.images import decode_rgb, open_image, perceptual_hash
from mm_assets.formats.pdf import describe_pdf
from mm_assets.formats.reading import Boundary, file_id_of, file_id_of_path, read_file_bytes
from mm_assets.formats.shared_decodes import (
    SHARED_DECODE_SIDE,
    decode_ahead,
    keep_decoded,
    peek_decoded,
    settle_ahead,
)
from mm_assets.formats.text import decode_text
from mm_assets.ingest.discover import FoundFile, Rejected
from mm_assets.ingest.labels import CaptionIndex

# Bumped when inspection records something different for the same file (the raw_files code version).
INGEST_VERSION = "4"

_TEXT_FORMATS = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}


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


def _validation_decode(file_id: str, data: bytes, limits: InspectionLimits) -> Image.Image:
    """Decode at reduced JPEG scale (enough to find truncation, far cheaper than a full decode); the
    image also gives the perceptual hash and, within a run, the embedding its pixels."""
    image = decode_rgb(data, limits.max_image_pixels, min_side=SHARED_DECODE_SIDE)
    keep_decoded(file_id, SHARED_DECODE_SIDE, image)
    return image


def decode_images_ahead(files: list[FoundFile], boundary: Boundary, limits: InspectionLimits, workers: int) -> None:
    """Start the validation decodes of a batch's images before its ingest step runs (see
    formats/shared_decodes.py): regular files inside the sources only, as they are now; a file that
    fails here is inspected, and reported, by the step."""

    def decode(path: str) -> None:
        with contextlib.suppress(Exception):
            data = boundary.read(path, limits.max_file_bytes)
            _validation_decode(file_id_of(data), data, limits)

    images = [f.path for f in files if os.path.splitext(f.path)[1].lower() in IMAGE_EXTENSIONS]
    decode_ahead(images, decode, workers)


def inspect_file(entry: FoundFile, limits: InspectionLimits) -> dict:
    """One row of ``raw_files``: status 'ok' with a description, or 'quarantined' with a reason."""
    row = {
        "path": entry.path,
        "size": entry.size,
        "mtime_ns": entry.mtime_ns,
        "file_id": None,
        "kind": None,
        "format": None,
        "encoding": None,
        "width": None,
        "height": None,
        "pages": None,
        "duration": None,
        "phash": None,
        "status": "ok",
        "reason": None,
    }
    ext = os.path.splitext(entry.path)[1].lower()
    try:
        if ext in VIDEO_EXTENSIONS or ext in AUDIO_EXTENSIONS:
            # Streamed from disk, never held whole: no size limit (a recording may be larger than memory).
            kind = "video" if ext in VIDEO_EXTENSIONS else "audio"
            row.update(file_id=file_id_of_path(entry.path), kind=kind, format=ext.lstrip("."))
            row["size"] = os.path.getsize(entry.path)
            if not row["size"]:
                raise BadFile("empty file (0 bytes)")
            row.update(describe_media(entry.path, kind))
            if row["duration"] > limits.max_media_seconds:
                raise BadFile(
                    f"{kind} lasts (or its timestamps claim) {row['duration']:,.0f} s, more than "
                    f"max_media_seconds = {limits.max_media_seconds:,.0f}"
                )
            if kind == "video" and row["width"] * row["height"] > limits.max_image_pixels:
                raise BadFile(
                    f"video frames of {row['width']}x{row['height']} exceed the limit of "
                    f"{limits.max_image_pixels:,} pixels"
                )
            return row
        data = read_file_bytes(entry.path, limits.max_file_bytes)
        if not data:
            raise BadFile("empty file (0 bytes)")
        row["size"] = len(data)
        row["file_id"] = file_id_of(data)
        if ext in IMAGE_EXTENSIONS:
            row["kind"] = "image"
            try:
                header = open_image(data, limits.max_image_pixels)
            except BadFile as exc:
                if str(exc) == "not a recognised image format":
                    raise BadFile(f"named {ext} but the content is {_describe_other_content(data)}") from None
                raise
            row.update(format=header.format, width=header.width, height=header.height)
            image = peek_decoded(row["file_id"], SHARED_DECODE_SIDE)  # decoded ahead, in a run
            if image is None:
                image = _validation_decode(row["file_id"], data, limits)
            row["phash"] = perceptual_hash(image)
        elif ext in PDF_EXTENSIONS:
            row.update(kind="document", format="pdf", **describe_pdf(data))
            if row["pages"] > limits.max_pdf_pages:
                raise BadFile(f"PDF of {row['pages']:,} pages, more than max_pdf_pages = {limits.max_pdf_pages:,}")
        else:
            row["kind"] = "text"
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


def rejected_row(path: str, reason: str) -> dict:
    return {"path": path, "status": "quarantined", "reason": reason, "change": "added"}


def inspect_batch(
    files: list[FoundFile],
    rejected: list[Rejected],
    captions: CaptionIndex,
    limits: InspectionLimits,
    *,
    workers: int,
    progress: Callable[[], None],
) -> list[dict]:
    """The ``raw_files`` rows of a batch: every file inspected in a thread pool (decoders release the
    GIL), images with their caption and label, and the files discovery rejected without reading."""

    def inspect(entry: FoundFile) -> dict:
        settle_ahead(entry.path)
        row = inspect_file(entry, limits)
        row["change"] = entry.change
        if row["kind"] == "image" and row["status"] == "ok":
            row["caption"], row["label"] = captions.lookup(entry.path)
        progress()
        return row

    with ThreadPoolExecutor(workers) as pool:
        rows = list(pool.map(inspect, files))
    return rows + [rejected_row(r.path, r.reason) for r in rejected]
