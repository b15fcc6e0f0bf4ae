"""Read PDFs with PDFium (pypdfium2): page text with character boxes, embedded images, rendered pages.

pypdfium2 is Apache-2.0/BSD, its wheels bundle PDFium (nothing to download or compile), and PDFium
is the engine Chrome uses on hostile PDFs every day. PDFium is not thread-safe: every use of it
goes through ``_document``, which holds one process-wide lock (ingest inspects files in a thread
pool, and the search service renders pages in worker threads).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from mm_assets.formats import BadFile
from mm_assets.formats.images import encode_jpeg

# Images smaller than this on either side are rules, bullets and logos, not figures.
_MIN_FIGURE_PIXELS = 16
# How far below a figure (in points) its caption may start.
_CAPTION_BAND_PT = 36.0


@dataclass(frozen=True)
class PdfFigure:
    bbox: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the page, top-left origin
    jpeg: bytes
    caption: str | None  # the text just below the figure, if any
    anchor: int  # index in the page text of the first character below the figure (where it sits in the text)


@dataclass(frozen=True)
class PdfPage:
    number: int  # 1-based
    text: str
    char_boxes: np.ndarray  # (len(text), 4) fractions of the page, top-left origin; NaN for generated characters
    figures: list[PdfFigure]
    skipped: list[str]  # figures left out, with the reason (too many pixels to decode)


# Reentrant: chunking renders a page while it holds the document it is reading.
_PDFIUM = threading.RLock()


@contextmanager
def _document(data: bytes) -> Iterator[pdfium.PdfDocument]:
    """An open PDF, used and closed while holding the PDFium lock."""
    with _PDFIUM:
        try:
            doc = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            message = str(exc)
            if "password" in message.lower():
                raise BadFile("encrypted PDF: it needs a password to open") from None
            raise BadFile(f"corrupt or truncated PDF ({message})") from None
        try:
            if len(doc) == 0:
                raise BadFile("PDF has no pages")
            yield doc
        finally:
            doc.close()


def describe_pdf(data: bytes) -> dict:
    """Pages and the first page's size in points; every page must load."""
    with _document(data) as doc:
        for i in range(len(doc)):
            try:
                doc[i].close()
            except pdfium.PdfiumError as exc:
                raise BadFile(f"corrupt PDF: page {i + 1} cannot be loaded ({exc})") from None
        width, height = doc[0].get_size()
        return {"pages": len(doc), "width": round(width), "height": round(height)}


def read_pdf_pages(data: bytes, *, image_max_side: int, max_pixels: int) -> Iterator[PdfPage]:
    """Each page's text with character boxes, and its figures; a figure of more than ``max_pixels``
    is never decoded (a small PDF can hold an image of hundreds of megapixels)."""
    with _document(data) as doc:
        for index in range(len(doc)):
            page = doc[index]
            try:
                yield _read_page(page, index + 1, image_max_side, max_pixels)
            finally:
                page.close()


def render_page(data: bytes, number: int, *, max_side: int) -> bytes:
    with _document(data) as doc:
        if not 1 <= number <= len(doc):
            raise BadFile(f"the PDF has no page {number}")
        page = doc[number - 1]
        scale = max_side / max(page.get_size())
        return encode_jpeg(page.render(scale=scale).to_pil(), max_side)


def _read_page(page: pdfium.PdfPage, number: int, image_max_side: int, max_pixels: int) -> PdfPage:
    width, height = page.get_size()
    textpage = page.get_textpage()
    text = textpage.get_text_range()
    boxes = np.full((len(text), 4), np.nan, dtype=np.float32)
    for i in range(min(len(text), textpage.count_chars())):
        left, bottom, right, top = textpage.get_charbox(i)
        if right > left or top > bottom:  # generated characters (line breaks) have no box
            boxes[i] = (left / width, 1 - top / height, right / width, 1 - bottom / height)
    figures, skipped = [], []
    for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]):
        px_w, px_h = obj.get_px_size()
        if min(px_w, px_h) < _MIN_FIGURE_PIXELS:
            continue
        if px_w * px_h > max_pixels:
            skipped.append(f"a {px_w}x{px_h} figure exceeds the limit of {max_pixels:,} pixels; not decoded")
            continue
        try:
            pixels = obj.get_bitmap(render=False).to_pil()
        except pdfium.PdfiumError:
            continue  # an image PDFium cannot decode is skipped; the page text still counts
        left, bottom, right, top = obj.get_bounds()
        caption = textpage.get_text_bounded(
            left=max(0.0, left - 20), bottom=max(0.0, bottom - _CAPTION_BAND_PT), right=width, top=bottom
        ).strip()
        below = np.nonzero(boxes[:, 1] >= 1 - bottom / height)[0]  # NaN compares False: generated chars skipped
        figures.append(
            PdfFigure(
                bbox=(
                    max(0.0, left / width),
                    max(0.0, 1 - top / height),
                    min(1.0, right / width),
                    min(1.0, 1 - bottom / height),
                ),
                jpeg=encode_jpeg(pixels, image_max_side),
                caption=" ".join(caption.split()) or None,
                anchor=int(below[0]) if len(below) else len(text),
            )
        )
    textpage.close()
    return PdfPage(number, text, boxes, figures, skipped)


def text_bbox(page: PdfPage, start: int, end: int) -> list[float] | None:
    """The box around characters [start, end) of a page's text, as fractions of the page."""
    boxes = page.char_boxes[start:end]
    boxes = boxes[~np.isnan(boxes[:, 0])]
    if not len(boxes):
        return None
    return [float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max())]
