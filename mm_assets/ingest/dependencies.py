"""A file's dependencies: the other files its chunks or its row take content from. An image's caption
comes from a sidecar or a captions manifest, a video's subtitles from the file beside it, a markdown or
HTML page's figures from the images it links. When one of them changes, appears or disappears, the file
is ingested again (its chunk ids carry the dependency's content address, so only what changed is
embedded again).

Dependencies are listed once, when a file is batched (markup is parsed then), and stored in the seen
index; each discovery only looks at their sizes and times, so a tick costs no reads (a captions manifest
whose time changed is read once, to tell which of its images' captions changed).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable

from mm_assets.formats import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, BadFile
from mm_assets.formats.markup import parse_markup, referenced_path
from mm_assets.formats.reading import Boundary
from mm_assets.formats.subtitles import subtitle_candidates
from mm_assets.formats.text import decode_text
from mm_assets.ingest.labels import CaptionIndex, caption_files

_MARKUP_EXTENSIONS = frozenset({".md", ".markdown", ".html", ".htm"})

Stat = tuple[int, int]  # (size, mtime_ns); ABSENT when there is no such file
ABSENT = (-1, -1)


def dependencies_of(path: str, boundary: Boundary, max_bytes: int) -> list[str]:
    """The paths whose content becomes part of this file's, present or not (a sidecar created later
    counts too). Unreadable markup has none: it is quarantined by ingestion anyway."""
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return caption_files(path, boundary)
    if ext in VIDEO_EXTENSIONS:
        return subtitle_candidates(path)
    if ext not in _MARKUP_EXTENSIONS:
        return []
    try:
        doc = parse_markup(decode_text(boundary.read(path, max_bytes))[0], path)
    except BadFile:
        return []
    linked = set()
    for ref in doc.images if doc else []:
        try:
            linked.add(referenced_path(path, ref.src))
        except BadFile:
            pass  # a remote or empty reference: nothing on disk to watch
    return sorted(linked)


def dependency_content(path: str, dependencies: list[str], captions: CaptionIndex, stat: Callable[[str], Stat]) -> int:
    """What a file takes from its dependencies, as one number: an image's caption and label (so an
    edit to another image's row of a shared captions manifest changes nothing here); for the other
    kinds, their state (a subtitle file or a linked image is all content)."""
    if os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS:
        return zlib.crc32(repr(captions.lookup(path)).encode())
    return dependency_state(dependencies, stat)


def stat_of(path: str) -> Stat:
    try:
        st = os.stat(path)
    except OSError:
        return ABSENT
    return st.st_size, st.st_mtime_ns


def dependency_state(dependencies: list[str], stat: Callable[[str], Stat]) -> int:
    """One number that changes when any dependency is edited, created or removed (a hash of integers
    only, so the same in every process)."""
    return hash(tuple(stat(d) for d in dependencies))
