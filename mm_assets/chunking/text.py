"""Split text into windows that fit a CLIP text tower, keeping markdown headings as context."""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Section:
    headings: tuple[str, ...]
    body: str
    offset: int  # where body starts in the whole text


@dataclass(frozen=True)
class TextWindow:
    text: str  # what gets embedded: heading context + the window of the body
    heading: str | None
    char_start: int
    char_end: int
    n_tokens: int  # special tokens included


def split_markdown_sections(text: str) -> list[Section]:
    """Sections between headings (ignoring '#' lines inside fenced code), each with its heading path."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    body_start, in_fence, pos = 0, False, 0

    def close(end: int):
        body = text[body_start:end]
        if body.strip() or path:
            sections.append(Section(tuple(h for _, h in path), body, body_start))

    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line.rstrip("\r\n"))
        if match:
            close(pos)
            level = len(match.group(1))
            path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, match.group(2).strip())]
            body_start = pos + len(line)
        pos += len(line)
    close(len(text))
    return sections


def chunk_text_windows(text: str, tokenizer, *, max_tokens: int, overlap: int, markdown: bool) -> list[TextWindow]:
    """Token windows of at most ``max_tokens`` (BOS/EOS included), overlapping by ``overlap`` tokens.

    Windows end and start on word boundaries where possible; each window of a markdown section is
    prefixed with its heading path ("Guide > Install: ...") so the window keeps its context.
    """
    sections = split_markdown_sections(text) if markdown else [Section((), text, 0)]
    windows: list[TextWindow] = []
    for section in sections:
        heading = " > ".join(section.headings) or None
        prefix = _fit_prefix(section.headings, tokenizer, max_tokens)
        windows.extend(_section_windows(section, heading, prefix, tokenizer, max_tokens, overlap))
    return windows


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=True)["input_ids"])


def _fit_prefix(headings: tuple[str, ...], tokenizer, max_tokens: int) -> str:
    """Heading context, dropping outer headings until it takes at most half the window."""
    for i in range(len(headings)):
        prefix = " > ".join(headings[i:]) + ": "
        if _count(tokenizer, prefix) <= max_tokens // 2:
            return prefix
    return ""


def _section_windows(section: Section, heading, prefix: str, tokenizer, max_tokens: int, overlap: int):
    body = section.body
    offsets = tokenizer(body, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    n = len(offsets)
    if n == 0:
        if prefix:  # a heading with no body is still searchable by its words
            yield TextWindow(prefix.rstrip(": "), heading, section.offset, section.offset, _count(tokenizer, prefix))
        return
    budget = max_tokens - 2 - (_count(tokenizer, prefix) - 2 if prefix else 0)

    def glued(i: int) -> bool:  # token i continues the word of token i-1
        return 0 < i < n and offsets[i][0] == offsets[i - 1][1]

    start = 0
    while start < n:
        end = min(start + budget, n)
        while end < n and glued(end) and end > start + budget // 2:
            end -= 1
        while True:  # re-tokenising a substring can differ at its edges; shrink until it fits
            window = prefix + body[offsets[start][0] : offsets[end - 1][1]]
            n_tokens = _count(tokenizer, window)
            if n_tokens <= max_tokens or end - start == 1:
                break
            end -= 1
        yield TextWindow(
            window, heading, section.offset + offsets[start][0], section.offset + offsets[end - 1][1], n_tokens
        )
        if end >= n:
            return
        next_start = max(start + 1, end - overlap)
        while glued(next_start) and next_start < end - 1:
            next_start += 1
        start = next_start
