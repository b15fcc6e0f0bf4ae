"""PCM WAV files that FFmpeg misreads or refuses, read directly: big-endian ones (RIFX) and samples
in containers of unusual widths (36-bit samples in 5 bytes, 45 in 6, 53 in 7). Other tools play
them; without this they would be quarantined as corrupt, or decoded as noise.

Only integer PCM is handled here (format 1, or WAVE_FORMAT_EXTENSIBLE with the PCM sub-format);
everything else stays with FFmpeg.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

from mm_assets.formats import BadFile

_FFMPEG_WIDTHS = (1, 2, 3, 4, 8)  # bytes per sample FFmpeg decodes correctly in little-endian RIFF
_STREAMING_SIZES = (0, 0xFFFFFFFF)  # written by muxers that cannot seek back: "until the end"


@dataclass(frozen=True)
class PcmWav:
    path: str
    rate: int
    channels: int
    width: int  # bytes per sample
    big_endian: bool
    data_offset: int
    frames: int  # sample frames present in the file

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def read_pcm_header(path: str) -> PcmWav | None:
    """The layout of a PCM WAV that needs this reader; None for any other file (FFmpeg's)."""
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX"):
            return None
        e = ">" if head[:4] == b"RIFX" else "<"
        size = os.fstat(fh.fileno()).st_size
        fmt = None
        while True:
            chunk = fh.read(8)
            if len(chunk) < 8:
                raise BadFile("WAV without a data chunk")
            name, length = chunk[:4], struct.unpack(e + "I", chunk[4:])[0]
            if name == b"fmt ":
                fmt = fh.read(min(length, 64))
                fh.seek(length - len(fmt) + (length & 1), os.SEEK_CUR)
            elif name == b"data":
                break
            else:
                fh.seek(length + (length & 1), os.SEEK_CUR)
        data_offset = fh.tell()
    if fmt is None or len(fmt) < 16:
        raise BadFile("WAV without a format chunk")
    tag, channels, rate, _, block, bits = struct.unpack(e + "HHIIHH", fmt[:16])
    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's first field is the tag
        tag = struct.unpack(e + "H", fmt[24:26])[0]
    width = (bits + 7) // 8
    if tag != 1 or (e == "<" and width in _FFMPEG_WIDTHS):
        return None
    if not channels or not rate or block != width * channels or width > 8:
        raise BadFile(f"WAV format chunk is inconsistent ({channels} channels, {bits} bits, block {block})")
    available = (size - data_offset) // block
    declared = None if length in _STREAMING_SIZES else length // block
    if declared is not None and declared > available:
        raise BadFile(f"truncated audio: the file holds {available:,} of the {declared:,} frames its header declares")
    frames = available if declared is None else declared
    return PcmWav(path, rate, channels, width, e == ">", data_offset, frames)


def read_pcm(wav: PcmWav, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Seconds [start, end) as mono float32 in [-1, 1] at the file's own rate; only those bytes are read."""
    first = max(0, int(start * wav.rate))
    last = wav.frames if end is None else min(wav.frames, int(np.ceil(end * wav.rate)))
    frame_bytes = wav.width * wav.channels
    with open(wav.path, "rb") as fh:
        fh.seek(wav.data_offset + first * frame_bytes)
        raw = np.frombuffer(fh.read(max(0, last - first) * frame_bytes), dtype=np.uint8)
    raw = raw[: len(raw) // frame_bytes * frame_bytes].reshape(-1, wav.channels, wav.width)
    if not wav.big_endian:
        raw = raw[..., ::-1]  # most significant byte first
    # Sign-extend each sample into 8 bytes, then read them as big-endian int64.
    padded = np.zeros((*raw.shape[:2], 8), dtype=np.uint8)
    padded[..., 8 - wav.width :] = raw
    padded[..., : 8 - wav.width] = np.where(raw[..., :1] >= 0x80, 0xFF, 0)
    values = padded.view(">i8")[..., 0].astype(np.float64)
    return (values.mean(axis=1) / 2.0 ** (8 * wav.width - 1)).astype(np.float32)
