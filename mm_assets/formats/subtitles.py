"""Subtitles and transcripts beside a video (``talk.mp4`` + ``talk.srt`` / ``talk.vtt``), via pysubs2."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pysubs2

from mm_assets.formats import BadFile
from mm_assets.formats.reading import Boundary, file_id_of, read_file_bytes
from mm_assets.formats.text import decode_text

SUBTITLE_EXTENSIONS = (".srt", ".vtt")
_MAX_SUBTITLE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float
    text: str


@dataclass(frozen=True)
class Subtitles:
    path: str
    file_id: str  # content address: an edited subtitle file gives new chunk ids
    cues: list[Cue]


def subtitle_candidates(video_path: str) -> list[str]:
    """Where a video's subtitle file may be, in order of preference."""
    stem = os.path.splitext(video_path)[0]
    return [stem + ext for ext in SUBTITLE_EXTENSIONS]


def subtitle_path_for(video_path: str, boundary: Boundary) -> str | None:
    """The subtitle file beside a video, if one is there; BadFile if it is there but may not be read
    (it leads outside the source folders, or is not a regular file)."""
    found = next((path for path in subtitle_candidates(video_path) if os.path.lexists(path)), None)
    return boundary.resolve(found) if found else None


def read_subtitles(path: str) -> Subtitles:
    data = read_file_bytes(path, _MAX_SUBTITLE_BYTES)
    text, _ = decode_text(data)
    try:
        events = pysubs2.SSAFile.from_string(text, format_="vtt" if path.lower().endswith(".vtt") else "srt")
    except (pysubs2.Pysubs2Error, ValueError) as exc:
        raise BadFile(f"unreadable subtitle file {os.path.basename(path)} ({exc})") from None
    cues = [
        Cue(e.start / 1000, e.end / 1000, " ".join(e.plaintext.split()))
        for e in events
        if not e.is_comment and e.plaintext.strip()
    ]
    return Subtitles(path, file_id_of(data), cues)
