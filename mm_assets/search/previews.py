"""The media of a search hit, for a person to look at: an image region as a thumbnail, a PDF page with
the hit's box outlined, a video frame at the hit's time, an audio window as WAV.

Only chunks in the index are rendered, from the file the index recorded: a file whose content has
changed since it was ingested is refused (its new content is another file id), never shown as the hit.
Every decode is bounded by the configured pixel and byte limits.
"""

from __future__ import annotations

import io
import os
import wave
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from mm_assets.formats import BadFile
from mm_assets.formats.images import decode_rgb, encode_jpeg
from mm_assets.formats.markup import read_referenced_image
from mm_assets.formats.reading import Boundary, read_ingested_file

THUMBNAIL_SIDE = 384
PAGE_SIDE = 800
AUDIO_SAMPLE_RATE = 22_050
_OUTLINE = (230, 40, 40)


class NoMedia(LookupError):
    """The chunk has nothing to show but its text (a text window of a plain text file, say)."""


@dataclass(frozen=True)
class Media:
    data: bytes
    media_type: str  # image/jpeg or audio/wav


def render_chunk_media(chunk: dict, *, boundary: Boundary, max_pixels: int, max_bytes: int) -> Media:
    """``chunk``: a row of store.catalog.media_chunk (the chunk with its file's path and kind);
    ``boundary``: the source folders of the batch that ingested it (a linked image is read only there)."""
    kind, path, file_id = chunk["kind"], chunk["path"], chunk["file_id"]
    if chunk["modality"] == "audio":
        return _audio_window(_same_size(path, chunk["size"]), chunk["t_start"], chunk["t_end"])
    if kind == "image":
        image = decode_rgb(read_ingested_file(path, file_id, max_bytes), max_pixels, min_side=THUMBNAIL_SIDE * 2)
        return _jpeg(_crop(image, chunk["bbox"]), THUMBNAIL_SIDE)
    if kind == "document" and chunk["page"]:
        from mm_assets.formats.pdf import render_page  # PDFium: only for PDF hits

        page = render_page(read_ingested_file(path, file_id, max_bytes), chunk["page"], max_side=PAGE_SIDE)
        return _jpeg(_outline(decode_rgb(page, max_pixels), chunk["bbox"]), PAGE_SIDE)
    if kind == "video" and chunk["t_start"] is not None:
        from mm_assets.formats.audio_video import frame_at  # PyAV: only for video hits

        return Media(frame_at(_same_size(path, chunk["size"]), chunk["t_start"], max_side=PAGE_SIDE), "image/jpeg")
    if kind == "text" and chunk["role"] == "figure":
        read_ingested_file(path, file_id, max_bytes)  # the document is still the one indexed
        _, data = read_referenced_image(path, chunk["text"], max_bytes, boundary)
        return _jpeg(decode_rgb(data, max_pixels, min_side=THUMBNAIL_SIDE), THUMBNAIL_SIDE)
    raise NoMedia(f"chunk {chunk['chunk_id']} is text: it has no media to show")


def _same_size(path: str, size: int) -> str:
    """Recordings are streamed, not hashed per request (hours of video): a changed size says the file
    is no longer the one indexed."""
    try:
        now = os.path.getsize(path)
    except OSError:
        raise BadFile("file vanished since it was indexed") from None
    if now != size:
        raise BadFile("file changed since it was indexed; it will be picked up as a new version")
    return path


def _crop(image: Image.Image, bbox) -> Image.Image:
    if not bbox or list(bbox) == [0.0, 0.0, 1.0, 1.0]:
        return image
    w, h = image.size
    return image.crop((round(bbox[0] * w), round(bbox[1] * h), round(bbox[2] * w), round(bbox[3] * h)))


def _outline(page: Image.Image, bbox) -> Image.Image:
    """The page with the chunk's box (fractions of the page) drawn on it."""
    if bbox and list(bbox) != [0.0, 0.0, 1.0, 1.0]:
        w, h = page.size
        box = (bbox[0] * w, bbox[1] * h, bbox[2] * w, bbox[3] * h)
        ImageDraw.Draw(page).rectangle(box, outline=_OUTLINE, width=max(2, w // 200))
    return page


def _jpeg(image: Image.Image, max_side: int) -> Media:
    return Media(encode_jpeg(image, max_side), "image/jpeg")


def _audio_window(path: str, start: float | None, end: float | None) -> Media:
    from mm_assets.formats.audio_video import decode_audio  # PyAV: only for audio hits

    if start is None or end is None or end <= start:
        raise BadFile("audio chunk without a time span")
    pcm = decode_audio(path, AUDIO_SAMPLE_RATE, start, end)
    samples = (np.clip(pcm, -1.0, 1.0) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(AUDIO_SAMPLE_RATE)
        wav.writeframes(samples.tobytes())
    return Media(out.getvalue(), "audio/wav")
