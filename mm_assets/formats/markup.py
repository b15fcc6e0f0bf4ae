"""Markdown and HTML as text with headings, plus the images they reference (alt text, caption, place).

Both come out the same way: the text (HTML reduced to its readable text, headings written as
markdown headings so one section splitter serves both) and each image with its offset in that text.
"""

from __future__ import annotations

import bisect
import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from bs4 import BeautifulSoup, NavigableString, Tag
from markdown_it import MarkdownIt

from mm_assets.formats import BadFile
from mm_assets.formats.reading import Boundary, file_id_of


@dataclass(frozen=True)
class ImageRef:
    src: str
    alt: str | None
    caption: str | None  # a title, a figcaption, or the words beside the image in its paragraph
    offset: int  # where the reference sits in the document text


@dataclass(frozen=True)
class MarkupDocument:
    text: str
    images: list[ImageRef]


def _clean(text: str | None) -> str | None:
    text = " ".join((text or "").split())
    return text or None


def parse_markdown(text: str) -> MarkupDocument:
    line_offsets = [0]
    for line in text.splitlines(keepends=True):
        line_offsets.append(line_offsets[-1] + len(line))
    images = []
    for token in MarkdownIt("commonmark").parse(text):
        if token.type != "inline" or not token.children:
            continue
        pictures = [t for t in token.children if t.type == "image"]
        # Text in the same paragraph as a lone image is its caption ("![..](fig.png)\n*Figure 1: ...*").
        beside = _clean(" ".join(t.content for t in token.children if t.type in ("text", "code_inline")))
        for picture in pictures:
            caption = _clean(picture.attrs.get("title")) or (beside if len(pictures) == 1 else None)
            images.append(
                ImageRef(
                    src=str(picture.attrs.get("src", "")),
                    alt=_clean(picture.content),
                    caption=caption,
                    offset=line_offsets[token.map[0]] if token.map else 0,
                )
            )
    return MarkupDocument(text, images)


_SKIPPED = {"script", "style", "noscript", "template", "head", "svg", "figcaption"}
_BLOCKS = {
    "p", "div", "section", "article", "main", "header", "footer", "aside", "nav", "li", "ul", "ol", "table",
    "tr", "blockquote", "pre", "figure", "br", "hr", "dt", "dd", "dl",
}  # fmt: skip


def parse_html(html: str) -> MarkupDocument:
    soup = BeautifulSoup(html, "html.parser")
    parts: list[str] = []
    images: list[ImageRef] = []
    length = 0

    def emit(s: str) -> None:
        nonlocal length
        parts.append(s)
        length += len(s)

    # Depth-first with an explicit stack: exported legacy HTML nests unclosed tags thousands deep,
    # past Python's recursion limit.
    stack = [(iter(soup.children), False)]
    while stack:
        children, closes_block = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            if closes_block:
                emit("\n\n")
            continue
        if isinstance(child, NavigableString):
            if type(child) is NavigableString:  # not comments, CDATA or doctypes
                emit(re.sub(r"\s+", " ", str(child)))
            continue
        if not isinstance(child, Tag) or child.name in _SKIPPED:
            continue
        if re.fullmatch(r"h[1-6]", child.name):
            emit(f"\n\n{'#' * int(child.name[1])} {_clean(child.get_text(' ')) or ''}\n\n")
        elif child.name == "img":
            figure = child.find_parent("figure")
            figcaption = figure.find("figcaption") if figure else None
            caption = _clean(child.get("title")) or (_clean(figcaption.get_text(" ")) if figcaption else None)
            images.append(ImageRef(str(child.get("src") or ""), _clean(child.get("alt")), caption, length))
        else:
            block = child.name in _BLOCKS
            if block:
                emit("\n\n")
            stack.append((iter(child.children), block))

    raw = "".join(parts)
    # Collapse the blank lines blocks leave behind, keeping image offsets pointing at the same text.
    text, mapping, pos = [], [], 0
    for match in re.finditer(r"[ \t]*\n\s*\n\s*|[^\n]+|\n", raw):
        piece = match.group()
        replacement = "\n\n" if piece.strip() == "" and "\n" in piece else piece
        mapping.append((match.start(), pos))
        text.append(replacement)
        pos += len(replacement)

    starts = [old for old, _ in mapping]

    def moved(offset: int) -> int:
        i = bisect.bisect_right(starts, offset) - 1
        return mapping[i][1] if i >= 0 else 0

    return MarkupDocument(
        "".join(text).strip("\n"), [ImageRef(i.src, i.alt, i.caption, moved(i.offset)) for i in images]
    )


def parse_markup(text: str, path: str) -> MarkupDocument | None:
    """Markdown or HTML by extension; None for plain text."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".md", ".markdown"):
        return parse_markdown(text)
    if ext in (".html", ".htm"):
        return parse_html(text)
    return None


def referenced_path(doc_path: str, src: str) -> str:
    """The local path an image reference of a document means (relative to the document)."""
    parsed = urlparse(src)
    if parsed.scheme or parsed.netloc:
        raise BadFile(f"{src}: only local images are read (no network)")
    if not parsed.path:
        raise BadFile("empty image reference")
    return os.path.normpath(os.path.join(os.path.dirname(doc_path), unquote(parsed.path)))


def read_referenced_image(doc_path: str, src: str, max_bytes: int, boundary: Boundary) -> tuple[str, bytes]:
    """(file id, bytes) of a local image a document references, relative to the document; only a
    regular file inside the source folders is read."""
    data = boundary.read(referenced_path(doc_path, src), max_bytes)
    return file_id_of(data), data
