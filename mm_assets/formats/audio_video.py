"""Video and audio through PyAV: validate, sample frames with timestamps, decode audio to PCM.

PyAV (BSD) binds FFmpeg and its wheels bundle FFmpeg's libraries, so mp4/webm/mov and
wav/mp3/flac/ogg all decode with no system packages; FFmpeg's demuxers are built for damaged input.
Files are read from their path as FFmpeg streams them (a video may be larger than memory); bytes
are accepted too.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np

from mm_assets.formats import BadFile
from mm_assets.formats.images import encode_jpeg, perceptual_hash
from mm_assets.formats.wav import read_pcm, read_pcm_header

# A truncated file's packets stop well before the duration its header declares.
_TRUNCATION_TOLERANCE = 0.9
# Scene detection compares colour histograms: cheap, and blind to motion within a scene.
_PROFILE_SAMPLES = 2048  # pixels per plane
_PROFILE_BINS = 64
_PREROLL_SECONDS = 0.5


@dataclass(frozen=True)
class Frame:
    seconds: float
    jpeg: bytes
    phash: int  # of the decoded frame (formats/images.perceptual_hash)


MediaInput = str | bytes  # a path, or the file's bytes


def _open(media: MediaInput, kind: str):
    try:
        container = av.open(io.BytesIO(media) if isinstance(media, bytes) else media, mode="r")
    except av.FFmpegError as exc:
        raise BadFile(f"corrupt or truncated {kind} file ({exc})") from None
    streams = container.streams.video if kind == "video" else container.streams.audio
    if not streams:
        container.close()
        raise BadFile(f"no {kind} stream in the file")
    return container, streams[0]


def _declared_seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else None


def _check_riff_size(media: MediaInput, kind: str) -> None:
    """WAV/AVI headers state the file's size; FFmpeg derives durations from the bytes present, so a
    cut-off WAV would otherwise look whole. A streaming muxer (FFmpeg writing to a pipe) cannot know
    the size and writes 0 or 0xFFFFFFFF: nothing to check then."""
    if isinstance(media, bytes):
        head, size = media[:8], len(media)
    else:
        with open(media, "rb") as fh:
            head, size = fh.read(8), os.fstat(fh.fileno()).st_size
    if head[:4] == b"RIFF" and len(head) == 8 and head[4:8] not in (b"\x00" * 4, b"\xff" * 4):
        declared = int.from_bytes(head[4:8], "little") + 8
        if declared > size:
            raise BadFile(f"truncated {kind}: the file holds {size:,} of the {declared:,} bytes its header declares")


def describe_media(media: MediaInput, kind: str) -> dict:
    """Duration (and frame size for video); refuses files with no decodable content or cut short.

    Reads every packet (cheap: no decoding) to find truncation, and decodes until the first frame.
    """
    wav = read_pcm_header(media) if kind == "audio" and isinstance(media, str) else None
    if wav is not None:
        if not wav.frames:
            raise BadFile("no decodable audio frames")
        return {"duration": wav.seconds}
    _check_riff_size(media, kind)
    container, stream = _open(media, kind)
    try:
        declared = _declared_seconds(container, stream)
        first, last_packet = None, 0.0
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base is not None:
                last_packet = max(last_packet, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            if first is None:
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue  # a damaged packet; a later one may still decode
                first = frames[0] if frames else None
    except av.FFmpegError as exc:
        raise BadFile(f"corrupt {kind} data ({exc})") from None
    finally:
        container.close()
    if first is None:
        raise BadFile(f"no decodable {kind} frames")
    if declared and last_packet < _TRUNCATION_TOLERANCE * declared:
        raise BadFile(f"truncated {kind}: its data ends at {last_packet:.1f} s of the {declared:.1f} s it declares")
    seconds = declared or last_packet
    if kind == "video":
        return {"duration": seconds, "width": first.width, "height": first.height}
    return {"duration": seconds}


def sample_video_frames(
    media: MediaInput, *, every_seconds: float, scene_threshold: float | None, max_frames: int, max_side: int
) -> Iterator[Frame]:
    """Frames every ``every_seconds``; with ``scene_threshold``, also each frame whose colours moved
    from the last kept frame's by more than that share of their range (see _colour_shift): a cut,
    so short scenes are not missed."""
    container, stream = _open(media, "video")
    stream.thread_type = "AUTO"
    kept, next_due, last_profile = 0, 0.0, None
    try:
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            profile = _colour_profile(frame) if scene_threshold is not None else None
            due = frame.time >= next_due or (
                profile is not None and _colour_shift(profile, last_profile) > scene_threshold
            )
            if not due:
                continue
            last_profile = profile
            image = frame.to_image()
            yield Frame(float(frame.time), encode_jpeg(image, max_side), perceptual_hash(image))
            kept += 1
            next_due = frame.time + every_seconds
            if kept >= max_frames:
                return
    except av.FFmpegError as exc:
        raise BadFile(f"video stopped decoding ({exc})") from None
    finally:
        container.close()


def _resampled(pcm: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono float32 PCM from ``rate`` to ``target`` Hz, with FFmpeg's resampler."""
    if rate == target or not len(pcm):
        return pcm
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    parts = [f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(parts).astype(np.float32, copy=False)


def frame_at(media: MediaInput, seconds: float, *, max_side: int) -> bytes:
    """The first frame at or after ``seconds`` as a JPEG (seeks to the keyframe before it, then decodes
    forward: never the whole video)."""
    container, stream = _open(media, "video")
    try:
        if seconds > 0 and stream.time_base:
            container.seek(int(seconds / stream.time_base), stream=stream, backward=True, any_frame=False)
        last = None
        for frame in container.decode(stream):
            last = frame
            if frame.time is not None and frame.time >= seconds - 1e-3:
                break
    except av.FFmpegError as exc:
        raise BadFile(f"video stopped decoding ({exc})") from None
    finally:
        container.close()
    if last is None:
        raise BadFile("no decodable video frames")
    return encode_jpeg(last.to_image(), max_side)


def _colour_profile(frame) -> np.ndarray:
    """Cumulative histograms of Y, U and V over about 2,000 pixels, read straight from the decoder's
    YUV 4:2:0 planes (converting every frame to RGB would cost several times the decoding)."""
    if frame.format.name != "yuv420p" or frame.width % 2 or frame.height % 2:
        frame = frame.reformat(frame.width // 2 * 2, frame.height // 2 * 2, format="yuv420p")
    w, h = frame.width, frame.height
    flat, quarter = frame.to_ndarray().ravel(), (w // 2) * (h // 2)
    planes = (
        flat[: w * h].reshape(h, w),
        flat[w * h : w * h + quarter].reshape(h // 2, w // 2),
        flat[w * h + quarter :].reshape(h // 2, w // 2),
    )
    profile = []
    for plane in planes:
        step = max(1, int((plane.size / _PROFILE_SAMPLES) ** 0.5))
        counts = np.bincount(plane[::step, ::step].ravel() // (256 // _PROFILE_BINS), minlength=_PROFILE_BINS)
        profile.append(np.cumsum(counts) / counts.sum())
    return np.stack(profile)


def _colour_shift(a: np.ndarray, b: np.ndarray) -> float:
    """How far the colours moved, as a share of their range, averaged over Y, U and V (the earth
    mover's distance between the histograms): codec noise moves them a little, motion within a scene
    moves little mass, a cut moves most of it."""
    return float(np.abs(a - b).sum(axis=1).mean() / _PROFILE_BINS)


def decode_audio(media: MediaInput, sample_rate: int, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Seconds [start, end) of the file (default: all of it) as mono float32 PCM at ``sample_rate``.

    Seeks to ``start`` and stops decoding at ``end``, so windows of a long recording are read a few
    at a time, never the whole file at once."""
    wav = read_pcm_header(media) if isinstance(media, str) else None
    if wav is not None:
        return _resampled(read_pcm(wav, start, end), wav.rate, sample_rate)
    container, stream = _open(media, "audio")
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    parts, first_time, have = [], None, 0
    # Times count from the stream's first sample (MP3 and Opus streams start a few ms after zero).
    origin = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
    try:
        if start > _PREROLL_SECONDS and stream.time_base:
            # Start a little early: decoders (Opus, MP3) and the resampler need samples before the
            # first one they get right.
            seek_to = origin + start - _PREROLL_SECONDS
            container.seek(int(seek_to / stream.time_base), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if first_time is None:
                first_time = min(float(frame.time or origin) - origin, start)
            for resampled in resampler.resample(frame):
                parts.append(resampled.to_ndarray().reshape(-1))
                have += len(parts[-1])
            if end is not None and first_time + have / sample_rate >= end:
                break
        else:
            parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except av.FFmpegError as exc:
        raise BadFile(f"audio stopped decoding ({exc})") from None
    finally:
        container.close()
    if not parts:
        raise BadFile("no decodable audio frames")
    pcm = np.concatenate(parts).astype(np.float32, copy=False)
    offset = int(round((start - (first_time or 0.0)) * sample_rate))
    return pcm[offset : None if end is None else offset + int(round((end - start) * sample_rate))]
