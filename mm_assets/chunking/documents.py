"""Documents: plain text, markdown and HTML (with the images they link), and PDFs (pages, figures,
captions). Text is windowed by the configured strategy (chunking/text.py)."""

from __future__ import annotations

import bisect

from mm_assets.chunking import IMAGE_CHUNK_MAX_SIDE
from mm_assets.chunking.rows import FileChunks, in_reading_order
from mm_assets.chunking.text import TextChunker, TextWindow
from mm_assets.formats import BadFile
from mm_assets.formats.images import decode_rgb, encode_jpeg
from mm_assets.formats.markup import ImageRef, parse_markup, read_referenced_image
from mm_assets.formats.pdf import read_pdf_pages, render_page, text_bbox
from mm_assets.formats.reading import Boundary


def chunk_text(
    file_id: str, text: str, path: str, chunker: TextChunker, *, boundary: Boundary, max_pixels: int, max_bytes: int
) -> FileChunks:
    """Plain text, markdown or HTML: windows by the configured strategy; images a markdown or HTML
    file references become image chunks of their section, with their alt text and caption."""
    chunks = FileChunks(file_id, "text", chunker.params)
    doc = parse_markup(text, path)
    body = doc.text if doc else text
    windows = chunker.windows(body, markdown=doc is not None)
    images = doc.images if doc else []
    sections = chunker.sections(body, markdown=True) if images else []
    starts = [s.offset for s in sections]
    # An image goes after every window that starts at or before its paragraph.
    for item in in_reading_order(windows, [(ref.offset + 0.5, ref) for ref in images]):
        if isinstance(item, TextWindow):
            chunks.add_window(item)
            continue
        index = max(0, bisect.bisect_right(starts, item.offset) - 1)  # the section the image sits in
        fields = {
            "section": index,
            "heading": " > ".join(sections[index].headings) or None,
            "char_start": item.offset,
            "char_end": item.offset,
        }
        _add_linked_image(chunks, chunker, item, path, fields, boundary, max_pixels, max_bytes)
    return chunks


def _add_linked_image(
    chunks: FileChunks, chunker, ref: ImageRef, path: str, fields: dict, boundary: Boundary, max_pixels, max_bytes
):
    try:
        image_id, data = read_referenced_image(path, ref.src, max_bytes, boundary)
        jpeg = encode_jpeg(decode_rgb(data, max_pixels, min_side=IMAGE_CHUNK_MAX_SIDE), IMAGE_CHUNK_MAX_SIDE)
    except BadFile as exc:
        chunks.problems.append(f"image {ref.src!r}: {exc}")
        chunks.add_descriptions(chunker, None, ref.alt, ref.caption, **fields)
        return
    image_chunk = chunks.add("image", "figure", content=image_id, media=jpeg, text=ref.src, **fields)
    chunks.add_descriptions(chunker, image_chunk, ref.alt, ref.caption, **fields)


def chunk_pdf(file_id: str, data: bytes, chunker: TextChunker, params: dict, *, max_pixels: int) -> FileChunks:
    """Per page: text windows with their box on the page, figures with their captions, and the
    rendered page when configured. ``section`` is the page number."""
    chunks = FileChunks(file_id, "document", params)
    side = params["image_max_side"]
    for page in read_pdf_pages(data, image_max_side=side, max_pixels=max_pixels):
        chunks.problems += [f"page {page.number}: {reason}" for reason in page.skipped]
        where = {"page": page.number, "section": page.number}
        if params["render_pages"]:
            chunks.add("image", "page", media=render_page(data, page.number, max_side=side), bbox=[0, 0, 1, 1], **where)
        windows = chunker.windows(page.text, markdown=False)
        # A figure goes before the text below it (its caption first).
        for item in in_reading_order(windows, [(f.anchor - 0.5, f) for f in page.figures]):
            if isinstance(item, TextWindow):
                chunks.add_window(item, bbox=text_bbox(page, item.char_start, item.char_end), **where)
            else:
                figure = chunks.add("image", "figure", media=item.jpeg, bbox=list(item.bbox), **where)
                chunks.add_descriptions(chunker, figure, None, item.caption, bbox=list(item.bbox), **where)
    return chunks
