"""What a search returns, and the policies that reshape a ranked list of hits: one hit per file or
per key, and the chunks around each hit."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import duckdb

from mm_assets.store.catalog import chunk_details, chunks_around


@dataclass(frozen=True)
class SearchHit:
    path: str
    chunk_id: str
    modality: str
    distance: float  # cosine distance, 0 = same direction
    text: str | None
    heading: str | None
    file_id: str
    encoder: str
    # Where the chunk sits in its parent file: its role (window, figure, caption, frame, ...), its
    # place in reading order, section, PDF page, character range, region, time span in a video or audio.
    role: str | None = None
    position: int = 0
    section: int | None = None
    page: int | None = None
    char_start: int | None = None
    char_end: int | None = None
    bbox: list[float] | None = None
    t_start: float | None = None
    t_end: float | None = None
    # Alt text and captions: the image chunk they describe (its id, page, region).
    describes: dict | None = None
    # On request: the chunks before and after it in the same file (a paragraph around a hit, say).
    context: list[dict] = field(default_factory=list)
    # How hits were ranked when not by distance: over all modalities, calibrated, the log-odds that the
    # hit is relevant given its cosine (per query/hit modality pair); hybrid, the fused rank score.
    score: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def hits_of(
    con: duckdb.DuckDBPyConnection, ranked: list[tuple[str, float, float | None]], encoder_key: str
) -> list[SearchHit]:
    """(chunk id, cosine distance, score or None) as hits with their chunk's details, best first: by
    score where there is one, else by distance; ties by chunk id."""
    details = chunk_details(con, [chunk_id for chunk_id, _, _ in ranked])
    hits = (
        # rounding can take 1 - cos a hair below zero for identical directions
        SearchHit(chunk_id=c, distance=max(0.0, float(d)), encoder=encoder_key, score=s, **details[c])
        for c, d, s in ranked
    )
    return sorted(hits, key=lambda h: (-h.score, h.chunk_id) if h.score is not None else (h.distance, h.chunk_id))


def first_per_key(hits: list[SearchHit], key) -> list[SearchHit]:
    """Each ``key(hit)`` once, at the rank of its best hit."""
    seen: set = set()
    out = []
    for h in hits:
        if key(h) not in seen:
            seen.add(key(h))
            out.append(h)
    return out


def best_per_file(hits: list[SearchHit], k: int) -> list[SearchHit]:
    """Results grouped by file: each file once, at the rank of its best chunk."""
    return first_per_key(hits, lambda h: h.file_id)[:k]


def neighbouring_chunks(con: duckdb.DuckDBPyConnection, hits: list[SearchHit], width: int) -> list[SearchHit]:
    """Each hit with the chunks up to ``width`` positions before and after it in its file."""
    if width < 1 or not hits:
        return hits
    nearby = chunks_around(con, [(h.file_id, h.position) for h in hits], width)

    def around(h: SearchHit) -> list[dict]:
        return [
            {k: v for k, v in c.items() if k != "file_id"}
            for c in nearby
            if c["file_id"] == h.file_id and c["chunk_id"] != h.chunk_id and abs(c["position"] - h.position) <= width
        ]

    return [replace(h, context=around(h)) for h in hits]
