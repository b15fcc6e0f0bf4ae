"""Split text into windows that fit a CLIP text tower, by one of four strategies.

- ``fixed``: token windows with overlap over the whole text, structure ignored.
- ``heading``: the text split at markdown headings, fixed windows inside each section, each window
  prefixed with its heading path (the default: a window keeps the context of its section).
- ``sentence``: sections as for ``heading``, windows made of whole sentences.
- ``semantic``: sections as for ``heading``, and a window also ends where neighbouring sentences'
  embeddings diverge (a distance above the given percentile of the section's distances).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

# Bumped when a strategy's output changes for the same input (part of every chunk id).
STRATEGY_VERSIONS = {"fixed": "1", "heading": "1", "sentence": "1", "semantic": "1"}
# Sentence ends: . ! ? … (and closing quotes or brackets) before whitespace; blank lines.
_SENTENCE_END = re.compile(r"(?<=[.!?\u2026])([\"')\]\u201d\u2019]*)\s+|\n\s*\n")

EmbedSentences = Callable[[list[str]], np.ndarray]  # unit-norm rows

# Text is tokenized in blocks of this many characters (about 20,000 tokens): windows never cross a block.
_BLOCK_CHARS = 100_000
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
    section: int = 0  # index of the section (between headings) the window belongs to


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


def text_sections(text: str, *, markdown: bool, strategy: str) -> list[Section]:
    """The sections a strategy windows separately (one for plain text or ``fixed``)."""
    return split_markdown_sections(text) if markdown and strategy != "fixed" else [Section((), text, 0)]


def chunk_text_windows(
    text: str,
    tokenizer,
    *,
    max_tokens: int,
    overlap: int,
    markdown: bool,
    strategy: str = "heading",
    embed_sentences: EmbedSentences | None = None,
    semantic_percentile: float = 90.0,
) -> list[TextWindow]:
    """Windows of at most ``max_tokens`` tokens (BOS/EOS included) by ``strategy`` (see the module).

    Token windows overlap by ``overlap`` tokens and end and start on word boundaries where possible;
    each window of a markdown section is prefixed with its heading path ("Guide > Install: ...").
    """
    if strategy not in STRATEGY_VERSIONS:
        raise ValueError(f"unknown text chunking strategy {strategy!r}; choose one of {sorted(STRATEGY_VERSIONS)}")
    if strategy == "semantic" and embed_sentences is None:
        raise ValueError("the semantic strategy needs a sentence embedder")
    windows: list[TextWindow] = []
    for index, section in enumerate(text_sections(text, markdown=markdown, strategy=strategy)):
        heading = " > ".join(section.headings) or None
        prefix = _fit_prefix(section.headings, tokenizer, max_tokens)
        if strategy in ("fixed", "heading"):
            found = _section_windows(section, heading, prefix, tokenizer, max_tokens, overlap)
        else:
            spans = split_sentences(section.body)
            breaks = (
                semantic_breaks([section.body[a:b] for a, b in spans], embed_sentences, semantic_percentile)
                if strategy == "semantic"
                else set()
            )
            found = _sentence_windows(section, spans, breaks, heading, prefix, tokenizer, max_tokens, overlap)
        windows.extend(replace(w, section=index) for w in found)
    return windows


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, whitespace trimmed."""
    spans, start = [], 0
    for match in [*_SENTENCE_END.finditer(text), None]:
        end = match.start() + len(match.group(1) or "") if match else len(text)
        piece = text[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            spans.append((start + lead, start + len(piece.rstrip())))
        start = match.end() if match else start
    return spans


def semantic_breaks(sentences: list[str], embed_sentences: EmbedSentences, percentile: float) -> set[int]:
    """Indices i where a window should end after sentence i: the distance between the embeddings of
    sentences i and i+1 is above the ``percentile`` of the distances in this text."""
    if len(sentences) < 3:
        return set()
    vectors = embed_sentences(sentences)
    distances = 1.0 - (vectors[:-1] * vectors[1:]).sum(axis=1)
    threshold = np.percentile(distances, percentile)
    return {i for i, d in enumerate(distances) if d > threshold}


def _sentence_windows(section, spans, breaks, heading, prefix, tokenizer, max_tokens, overlap):
    """Whole sentences packed up to the window size, ending early at ``breaks``; a sentence longer than
    a window is cut into token windows."""
    start = 0
    while start < len(spans):
        end = start + 1
        while end < len(spans) and end - 1 not in breaks:
            candidate = prefix + section.body[spans[start][0] : spans[end][1]]
            if _count(tokenizer, candidate) > max_tokens:
                break
            end += 1
        a, b = spans[start][0], spans[end - 1][1]
        window = prefix + section.body[a:b]
        n_tokens = _count(tokenizer, window)
        if n_tokens <= max_tokens:
            yield TextWindow(window, heading, section.offset + a, section.offset + b, n_tokens)
        else:  # one sentence longer than a window
            part = Section(section.headings, section.body[a:b], section.offset + a)
            yield from _section_windows(part, heading, prefix, tokenizer, max_tokens, overlap)
        start = end


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
    """Token windows over a section, tokenized a block at a time: a section of megabytes (a text file
    that is one long line) costs memory for one block, not for every token of the file at once."""
    for block in _blocks(section):
        yield from _block_windows(block, heading, prefix, tokenizer, max_tokens, overlap)


def _blocks(section: Section):
    """The section in pieces of at most _BLOCK_CHARS characters, cut at whitespace where there is any."""
    body, start = section.body, 0
    while len(body) - start > _BLOCK_CHARS:
        cut = body.rfind(" ", start + _BLOCK_CHARS // 2, start + _BLOCK_CHARS)
        cut = cut + 1 if cut > 0 else start + _BLOCK_CHARS
        yield Section(section.headings, body[start:cut], section.offset + start)
        start = cut
    yield Section(section.headings, body[start:], section.offset + start) if start else section


def _block_windows(section: Section, heading, prefix: str, tokenizer, max_tokens: int, overlap: int):
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


@dataclass(frozen=True)
class TextChunker:
    """A tokenizer and the text parameters of the chunking config, applied to any text a file holds."""

    tokenizer: object
    params: dict  # max_tokens, overlap, strategy, semantic_percentile (see chunking_params)
    embed_sentences: EmbedSentences | None = None

    def windows(self, text: str, *, markdown: bool) -> list[TextWindow]:
        return chunk_text_windows(
            text,
            self.tokenizer,
            max_tokens=self.params["max_tokens"],
            overlap=self.params["overlap"],
            markdown=markdown,
            strategy=self.params["strategy"],
            embed_sentences=self.embed_sentences,
            semantic_percentile=self.params.get("semantic_percentile", 90.0),
        )

    def sections(self, text: str, *, markdown: bool) -> list[Section]:
        return text_sections(text, markdown=markdown, strategy=self.params["strategy"])

    def fit(self, text: str) -> tuple[str, int]:
        """A short text (alt text, a caption) cut to one window, and its token count."""
        first = next(_section_windows(Section((), text, 0), None, "", self.tokenizer, self.params["max_tokens"], 0))
        return first.text, first.n_tokens
