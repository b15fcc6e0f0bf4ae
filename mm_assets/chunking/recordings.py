"""Videos (frames by interval and scene cut, subtitles beside them) and audio (timed windows)."""

from __future__ import annotations

from mm_assets.chunking.rows import FileChunks
from mm_assets.chunking.text import TextChunker
from mm_assets.formats import BadFile
from mm_assets.formats.audio_video import sample_video_frames
from mm_assets.formats.reading import Boundary, check_ingested_path
from mm_assets.formats.subtitles import Subtitles, read_subtitles, subtitle_path_for


def chunk_video_file(f: dict, chunker: TextChunker, params: dict, boundary: Boundary) -> FileChunks:
    """A video streamed from its path, with the subtitle file beside it, if any."""
    subtitles, problem = None, None
    try:
        sidecar = subtitle_path_for(f["path"], boundary)
        subtitles = read_subtitles(sidecar) if sidecar else None
    except BadFile as exc:
        problem = f"subtitles: {exc}"
    video = check_ingested_path(f["path"], f["file_id"])
    chunks = chunk_video(f["file_id"], video, f["duration"], subtitles, chunker, params)
    chunks.problems += [problem] if problem else []
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
    if len(frames) == params["max_frames"]:
        chunks.problems.append(
            f"stopped at chunking.video_max_frames = {params['max_frames']} frames: nothing after "
            f"{frames[-1].seconds:.1f} s of {duration or 0:.1f} s was sampled"
        )
    ends = [f.seconds for f in frames[1:]] + [max(duration or 0.0, frames[-1].seconds)]
    # Frames and subtitle windows in time order (a frame first when both start together).
    timeline = [(f.seconds, 0, f, end) for f, end in zip(frames, ends)]
    if subtitles is not None:
        timeline += [(start, 1, window, end) for window, start, end in _cue_windows(subtitles, chunker)]
    for start, is_text, item, end in sorted(timeline, key=lambda t: t[:2]):
        if is_text:
            text, n_tokens = item
            fields = {"text": text, "n_tokens": n_tokens, "t_start": start, "t_end": end}
            chunks.add("text", "subtitle", content=subtitles.file_id, **fields)
        else:
            chunks.add("image", "frame", media=item.jpeg, t_start=start, t_end=end, bbox=[0, 0, 1, 1], phash=item.phash)
    return chunks


def _cue_windows(subtitles: Subtitles, chunker: TextChunker):
    """Consecutive cues joined while they fit one window: ((text, n_tokens), start, end)."""
    group, fitted = [], None
    for cue in subtitles.cues:
        joined = " ".join(c.text for c in [*group, cue])
        candidate = chunker.fit(joined)
        if group and candidate[0] != joined:
            yield fitted, group[0].start, group[-1].end
            group, candidate = [], chunker.fit(cue.text)
        group.append(cue)
        fitted = candidate
    if group:
        yield fitted, group[0].start, group[-1].end


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
