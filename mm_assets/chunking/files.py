"""Turn one ingested file into chunk rows (the ``chunks`` table's schema), whatever its kind.

Chunks of a file are numbered (``position``) in reading order: a figure comes right after the text
window it sits in and is followed by its alt text and caption, a frame sits between the subtitles
around it. So the neighbours of a hit are its context, and ``section`` ties a figure to the text of
its section (the PDF page, for PDFs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from mm_assets.chunking import IMAGE_CHUNK_MAX_SIDE, chunk_id_of
from mm_assets.chunking.text import TextChunker
from mm_assets.ingest import BadFile
from mm_assets.ingest.images import decode_rgb
from mm_assets.ingest.markup import ImageRef, parse_markup, read_referenced_image
from mm_assets.ingest.media import sample_video_frames
from mm_assets.ingest.pdf import encode_jpeg, read_pdf_pages, render_page, text_bbox
from mm_assets.ingest.reading import check_ingested_path, read_ingested_file
from mm_assets.ingest.subtitles import Subtitles, read_subtitles, subtitle_path_for
from mm_assets.ingest.text import decode_text

CHUNKS_SCHEMA = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("file_id", pa.string()),
        ("modality", pa.string()),  # image | text | audio: what an encoder embeds
        ("source", pa.string()),  # what the chunk is in its file: window, image, tile, figure, caption, ...
        ("position", pa.int32()),  # reading order within the file
        ("text", pa.string()),
        ("heading", pa.string()),
        ("section", pa.int32()),  # section (between headings) or PDF page the chunk belongs to
        ("char_start", pa.int64()),  # text range (in the page's text for PDFs, the extracted text for HTML)
        ("char_end", pa.int64()),
        ("n_tokens", pa.int32()),
        ("bbox", pa.list_(pa.float32(), 4)),  # x0, y0, x1, y1 as fractions of the (EXIF-oriented) image or page
        ("page", pa.int32()),  # 1-based PDF page
        ("t_start", pa.float64()),  # seconds into a video or audio file
        ("t_end", pa.float64()),
        ("linked_chunk_id", pa.string()),  # alt text and captions: the image chunk they describe
        ("media", pa.binary()),  # JPEG of an image cut out of the file (figure, frame, page, linked image)
    ]
)


def chunk_file(f: dict, chunker: TextChunker, params: dict, *, max_pixels: int, max_bytes: int) -> FileChunks:
    """The chunks of one ``raw_files`` row (an ingested file whose status is ok)."""
    kind, file_id = f["modality"], f["file_id"]
    if kind == "image":
        return chunk_image(file_id, params["image"])
    if kind == "audio":
        return chunk_audio(file_id, f["duration"], params["audio"])
    if kind == "video":
        return _chunk_video_file(f, chunker, params["video"])
    data = read_ingested_file(f["path"], file_id, max_bytes)
    if kind == "text":
        return chunk_text(file_id, decode_text(data)[0], f["path"], chunker, max_pixels=max_pixels, max_bytes=max_bytes)
    if kind == "document":
        return chunk_pdf(file_id, data, chunker, params["document"])
    raise BadFile(f"no chunker for files of kind {kind!r}")


def _chunk_video_file(f: dict, chunker: TextChunker, params: dict) -> FileChunks:
    """A video streamed from its path, with the subtitle file beside it, if any."""
    subtitles, problem = None, None
    sidecar = subtitle_path_for(f["path"])
    if sidecar:
        try:
            subtitles = read_subtitles(sidecar)
        except BadFile as exc:
            problem = str(exc)
    video = check_ingested_path(f["path"], f["file_id"])
    chunks = chunk_video(f["file_id"], video, f["duration"], subtitles, chunker, params)
    chunks.problems += [problem] if problem else []
    return chunks


@dataclass
class FileChunks:
    """Builds the rows of one file in reading order; ``problems`` are parts that could not be used
    (a missing linked image, an unreadable subtitle file) while the rest of the file still counts."""

    file_id: str
    kind: str  # the params key: text, image, document, video, audio
    params: dict
    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, modality: str, source: str, content: str | None = None, **fields) -> str:
        position = len(self.rows)
        row = {name: None for name in CHUNKS_SCHEMA.names}
        row.update(
            chunk_id=chunk_id_of(self.file_id, self.kind, self.params, position, content),
            file_id=self.file_id,
            modality=modality,
            source=source,
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
        for source, text in (("alt_text", alt), ("caption", caption if caption != alt else None)):
            if text:
                fitted, n_tokens = chunker.fit(text)
                self.add("text", source, text=fitted, n_tokens=n_tokens, linked_chunk_id=image_chunk, **fields)


def chunk_image(file_id: str, params: dict) -> FileChunks:
    """The whole image, plus an n×n grid of tiles when configured (bbox as fractions of the image)."""
    chunks = FileChunks(file_id, "image", params)
    chunks.add("image", "image", bbox=[0.0, 0.0, 1.0, 1.0])
    n = params["tiles"]
    for i in range(n * n if n else 0):
        x, y = i % n, i // n
        chunks.add("image", "tile", bbox=[x / n, y / n, (x + 1) / n, (y + 1) / n])
    return chunks


def chunk_text(
    file_id: str, text: str, path: str, chunker: TextChunker, *, max_pixels: int = 2**62, max_bytes: int = 2**40
) -> FileChunks:
    """Plain text, markdown or HTML: windows by the configured strategy; images a markdown or HTML
    file references become image chunks of their section, with their alt text and caption."""
    chunks = FileChunks(file_id, "text", chunker.params)
    doc = parse_markup(text, path)
    body = doc.text if doc else text
    windows = chunker.windows(body, markdown=doc is not None)
    images = doc.images if doc else []
    sections = chunker.sections(body, markdown=True) if images else []
    # An image goes after every window that starts at or before it.
    order = sorted(
        [(w.char_start, 0, w) for w in windows] + [(ref.offset + 0.5, 1, ref) for ref in images],
        key=lambda item: item[:2],
    )
    for _, is_image, item in order:
        if is_image:
            index = max((i for i, s in enumerate(sections) if s.offset <= item.offset), default=0)
            _add_linked_image(chunks, chunker, item, path, index, " > ".join(sections[index].headings) or None,
                              max_pixels, max_bytes)  # fmt: skip
        else:
            chunks.add_window(item)
    return chunks


def _add_linked_image(chunks: FileChunks, chunker, ref: ImageRef, path, section, heading, max_pixels, max_bytes):
    fields = {"section": section, "heading": heading, "char_start": ref.offset, "char_end": ref.offset}
    try:
        image_id, data = read_referenced_image(path, ref.src, max_bytes)
        jpeg = encode_jpeg(decode_rgb(data, max_pixels, min_side=IMAGE_CHUNK_MAX_SIDE), IMAGE_CHUNK_MAX_SIDE)
    except BadFile as exc:
        chunks.problems.append(f"image {ref.src!r}: {exc}")
        chunks.add_descriptions(chunker, None, ref.alt, ref.caption, **fields)
        return
    image_chunk = chunks.add("image", "figure", content=image_id, media=jpeg, text=ref.src, **fields)
    chunks.add_descriptions(chunker, image_chunk, ref.alt, ref.caption, **fields)


def chunk_pdf(file_id: str, data: bytes, chunker: TextChunker, params: dict) -> FileChunks:
    """Per page: text windows with their box on the page, figures with their captions, and the
    rendered page when configured. ``section`` is the page number."""
    chunks = FileChunks(file_id, "document", params)
    side = params["image_max_side"]
    for page in read_pdf_pages(data, image_max_side=side):
        where = {"page": page.number, "section": page.number}
        if params["render_pages"]:
            chunks.add("image", "page", media=render_page(data, page.number, max_side=side), bbox=[0, 0, 1, 1], **where)
        windows = chunker.windows(page.text, markdown=False)
        order = sorted(
            # A figure goes before the text below it (its caption first).
            [(w.char_start, 0, w) for w in windows] + [(f.anchor - 0.5, 1, f) for f in page.figures],
            key=lambda item: item[:2],
        )
        for _, is_figure, item in order:
            if is_figure:
                figure = chunks.add("image", "figure", media=item.jpeg, bbox=list(item.bbox), **where)
                chunks.add_descriptions(chunker, figure, None, item.caption, bbox=list(item.bbox), **where)
            else:
                chunks.add_window(item, bbox=text_bbox(page, item.char_start, item.char_end), **where)
    return chunks


def chunk_video(
    file_id: str,
    video: str | bytes,
    duration: float | None,
    subtitles: Subtitles | None,
    chunker: TextChunker,
    params: dict,
) -> FileChunks:
    """Frames (every N seconds, plus scene cuts when configured) as image chunks with their time span,
    and the subtitle cues beside the video packed into timed text windows, in time order."""
    chunks = FileChunks(file_id, "video", params)
    frames = list(
        sample_video_frames(
            video,
            every_seconds=params["every_seconds"],
            scene_threshold=params["scene_threshold"],
            max_frames=params["max_frames"],
            max_side=params["image_max_side"],
        )
    )
    if not frames:
        raise BadFile("no decodable video frames")
    ends = [f.seconds for f in frames[1:]] + [max(duration or 0.0, frames[-1].seconds)]
    timeline = [(f.seconds, 0, ("frame", f, end)) for f, end in zip(frames, ends)]
    if subtitles is not None:
        timeline += [(start, 1, ("cues", text, (start, end))) for text, start, end in _cue_windows(subtitles, chunker)]
    for _, _, (what, item, extra) in sorted(timeline, key=lambda t: t[:2]):
        if what == "frame":
            chunks.add("image", "frame", media=item.jpeg, t_start=item.seconds, t_end=extra, bbox=[0, 0, 1, 1])
        else:
            fitted, n_tokens = chunker.fit(item)
            chunks.add(
                "text", "subtitle", content=subtitles.file_id, text=fitted, n_tokens=n_tokens,
                t_start=extra[0], t_end=extra[1],
            )  # fmt: skip
    return chunks


def _cue_windows(subtitles: Subtitles, chunker: TextChunker):
    """Consecutive cues joined while they fit one window: (text, start, end)."""
    group: list = []
    for cue in subtitles.cues:
        joined = " ".join(c.text for c in [*group, cue])
        if group and chunker.fit(joined)[0] != joined:
            yield " ".join(c.text for c in group), group[0].start, group[-1].end
            group = []
        group.append(cue)
    if group:
        yield " ".join(c.text for c in group), group[0].start, group[-1].end


def chunk_audio(file_id: str, duration: float, params: dict) -> FileChunks:
    """Windows of ``window_seconds`` overlapping by ``overlap_seconds``; the last ends at the end."""
    chunks = FileChunks(file_id, "audio", params)
    window, step = params["window_seconds"], params["window_seconds"] - params["overlap_seconds"]
    start = 0.0
    while True:
        end = min(start + window, duration)
        chunks.add("audio", "audio_window", t_start=round(start, 3), t_end=round(end, 3))
        if end >= duration:
            return chunks
        start += step
