"""The rows of the ``chunks`` table, and the builder every chunker writes them with.

Chunks of a file are numbered (``position``) in reading order: a figure comes right after the text
window it sits in and is followed by its alt text and caption, a frame sits between the subtitles
around it. So the neighbours of a hit are its context, and ``section`` ties a figure to the text of
its section (the PDF page, for PDFs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mm_assets.chunking import chunk_id_of
from mm_assets.chunking.text import TextChunker, TextWindow
from mm_assets.store.tables import CHUNKS_SCHEMA


@dataclass
class FileChunks:
    """Builds the rows of one file in reading order; ``problems`` are parts that could not be used
    (a missing linked image, an unreadable subtitle file) while the rest of the file still counts."""

    file_id: str
    kind: str  # the params key: text, image, document, video, audio
    params: dict
    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, modality: str, role: str, content: str | None = None, **fields) -> str:
        position = len(self.rows)
        row = {name: None for name in CHUNKS_SCHEMA.names}
        row.update(
            chunk_id=chunk_id_of(self.file_id, self.kind, self.params, position, content),
            file_id=self.file_id,
            modality=modality,
            role=role,
            position=position,
            **fields,
        )
        self.rows.append(row)
        return row["chunk_id"]

    def add_window(self, window, **fields) -> str:
        values = {
            "text": window.text,
            "heading": window.heading,
            "section": window.section,
            "char_start": window.char_start,
            "char_end": window.char_end,
            "n_tokens": window.n_tokens,
        }
        return self.add("text", "window", **{**values, **fields})

    def add_descriptions(
        self, chunker: TextChunker, image_chunk: str | None, alt: str | None, caption: str | None, **fields
    ):
        """Alt text and caption as text chunks linked to the image they describe."""
        for role, text in (("alt_text", alt), ("caption", caption if caption != alt else None)):
            if text:
                fitted, n_tokens = chunker.fit(text)
                self.add("text", role, text=fitted, n_tokens=n_tokens, linked_chunk_id=image_chunk, **fields)


def in_reading_order(windows: list[TextWindow], placed: list[tuple[float, object]]) -> list:
    """Text windows by where they start, merged with other items at the given text offsets (a window
    that starts at the same offset comes first)."""
    ordered = sorted(
        [(w.char_start, 0, i) for i, w in enumerate(windows)] + [(at, 1, i) for i, (at, _) in enumerate(placed)]
    )
    return [windows[i] if kind == 0 else placed[i][1] for _, kind, i in ordered]
