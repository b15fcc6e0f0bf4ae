"""Turn one ingested file into chunk rows (the ``chunks`` table's schema)."""

from __future__ import annotations

import pyarrow as pa

from mm_assets.chunking import chunk_id_of
from mm_assets.chunking.text import chunk_text_windows

CHUNKS_SCHEMA = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("file_id", pa.string()),
        ("modality", pa.string()),
        ("position", pa.int32()),
        ("text", pa.string()),
        ("heading", pa.string()),
        ("char_start", pa.int64()),
        ("char_end", pa.int64()),
        ("n_tokens", pa.int32()),
        ("bbox", pa.list_(pa.float32(), 4)),  # x0, y0, x1, y1 as fractions of the (EXIF-oriented) image
    ]
)


def _row(file_id, modality, params, position, **fields) -> dict:
    row = {
        "chunk_id": chunk_id_of(file_id, modality, params, position),
        "file_id": file_id,
        "modality": modality,
        "position": position,
        "text": None,
        "heading": None,
        "char_start": None,
        "char_end": None,
        "n_tokens": None,
        "bbox": None,
    }
    row.update(fields)
    return row


def chunk_image(file_id: str, params: dict) -> list[dict]:
    """The whole image, plus an n×n grid of tiles when configured (bbox as fractions of the image)."""
    rows = [_row(file_id, "image", params, 0, bbox=[0.0, 0.0, 1.0, 1.0])]
    n = params["tiles"]
    for i in range(n * n if n else 0):
        x, y = i % n, i // n
        rows.append(_row(file_id, "image", params, i + 1, bbox=[x / n, y / n, (x + 1) / n, (y + 1) / n]))
    return rows


def chunk_text(file_id: str, text: str, path: str, tokenizer, params: dict) -> list[dict]:
    windows = chunk_text_windows(
        text,
        tokenizer,
        max_tokens=params["max_tokens"],
        overlap=params["overlap"],
        markdown=path.lower().endswith((".md", ".markdown")),
    )
    return [
        _row(
            file_id,
            "text",
            params,
            i,
            text=w.text,
            heading=w.heading,
            char_start=w.char_start,
            char_end=w.char_end,
            n_tokens=w.n_tokens,
        )
        for i, w in enumerate(windows)
    ]
