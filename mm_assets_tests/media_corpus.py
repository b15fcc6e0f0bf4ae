"""Documents, videos and audio the tests write themselves: a PDF with figures, markdown and HTML with
images, a video with subtitles, audio clips, and broken versions of each."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import av
import numpy as np
from fpdf import FPDF
from PIL import Image

PDF_CAPTIONS = ("Figure 1: red lighthouse above the harbour", "Figure 2: blue chart of weekly rainfall")
VIDEO_COLOURS = ((220, 30, 30), (30, 200, 30), (30, 30, 220))  # one 2-second scene each
VIDEO_SUBTITLES = """WEBVTT

00:00:00.500 --> 00:00:01.800
A red scene opens the film.

00:00:02.200 --> 00:00:03.900
Then everything turns green.

00:00:04.100 --> 00:00:05.900
Blue closes it.
"""


def _png(colour: tuple[int, int, int], size=(80, 60)) -> bytes:
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:] = colour
    pixels[10:30, 10:40] = 255 - np.asarray(colour)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def pdf_bytes(encrypted: bool = False) -> bytes:
    """Page 1: text only. Page 2: a paragraph, then two figures, each with a caption below it."""
    pdf = FPDF()
    if encrypted:
        pdf.set_encryption(owner_password="owner", user_password="reader")
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 6, "Harbour survey. " + "Fishing boats leave the harbour at dawn and return at noon. " * 12)
    pdf.add_page()
    pdf.multi_cell(0, 6, "Results. The lighthouse keeper recorded the weather every morning. " * 3)
    for (colour, caption), top in zip(zip(((200, 30, 30), (30, 30, 200)), PDF_CAPTIONS), (80, 160)):
        pdf.image(io.BytesIO(_png(colour)), x=20, y=top, w=60)
        pdf.set_xy(20, top + 48)
        pdf.cell(0, 6, caption)
    return bytes(pdf.output())


def write_markdown_with_images(folder: Path) -> Path:
    """Two sections; the first shows a linked image with alt text and a caption line, the second an
    image with a title, a missing image and a remote one (never fetched)."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "img" / "boat.png").write_bytes(_png((200, 120, 20)))
    (folder / "img" / "chart.png").write_bytes(_png((20, 120, 200)))
    doc = folder / "report.md"
    doc.write_text(
        "# Harbour report\n\nFishing boats leave at dawn.\n\n"
        "![An orange fishing boat](img/boat.png)\n*Figure 1: the boat at the pier*\n\n"
        "## Weather\n\nRain fell all week.\n\n"
        '![Rainfall bars](img/chart.png "Figure 2: weekly rainfall")\n\n'
        "![Gone](img/missing.png)\n\n![Remote](https://example.com/x.png)\n"
    )
    return doc


def write_html_with_images(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.png").write_bytes(_png((120, 20, 200)))
    doc = folder / "page.html"
    doc.write_text(
        "<html><head><style>p {}</style></head><body><h1>Net mending</h1><p>Nets are mended in winter.</p>"
        '<figure><img src="net.png" alt="A purple net"><figcaption>Figure 3: a mended net</figcaption></figure>'
        "<h2>Tools</h2><p>Needles and twine.</p><script>ignored()</script></body></html>"
    )
    return doc


def video_bytes(fmt: str = "mp4", codec: str = "mpeg4") -> bytes:
    """Six seconds at 10 fps, three 2-second scenes of different colours (64×48)."""
    out_buffer = io.BytesIO()
    with av.open(out_buffer, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(60):
            pixels = np.zeros((48, 64, 3), np.uint8)
            pixels[:] = VIDEO_COLOURS[i // 20]
            pixels[i % 20 : i % 20 + 8, :8] = 255  # a moving square: frames within a scene differ a little
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return out_buffer.getvalue()


def video_without_decodable_frames() -> bytes:
    """A valid container whose every video packet is garbage: it demuxes, nothing decodes."""
    data = bytearray(video_bytes())
    start = data.index(b"mdat") + 4
    end = data.index(b"moov") if b"moov" in data[start:] else len(data)
    rng = np.random.default_rng(0)
    data[start:end] = rng.integers(0, 256, end - start, dtype=np.uint8).tobytes()
    return bytes(data)


def audio_bytes(seconds: float, fmt: str = "wav", rate: int = 16000) -> bytes:
    """A tone whose pitch rises over the clip, mono."""
    codec = {"wav": "pcm_s16le", "flac": "flac", "mp3": "libmp3lame", "ogg": "libopus"}[fmt]
    rate = 48000 if fmt == "ogg" else rate  # Opus runs at 48 kHz
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * (220 + 40 * t) * t) * 32767).astype(np.int16)
    out_buffer = io.BytesIO()
    with av.open(out_buffer, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        sample_format = "s16p" if fmt == "mp3" else "s16"
        for i in range(0, len(samples), 1152):
            frame = av.AudioFrame.from_ndarray(samples[None, i : i + 1152], format=sample_format, layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return out_buffer.getvalue()


def write_media_corpus(folder: Path) -> dict[str, Path]:
    """The good files: a PDF, markdown and HTML with images, a video with subtitles, two audio clips."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "pdf": folder / "survey.pdf",
        "markdown": write_markdown_with_images(folder / "notes"),
        "html": write_html_with_images(folder / "web"),
        "video": folder / "film.mp4",
        "audio": folder / "tone.wav",
        "short_audio": folder / "blip.flac",
    }
    paths["pdf"].write_bytes(pdf_bytes())
    paths["video"].write_bytes(video_bytes())
    (folder / "film.vtt").write_text(VIDEO_SUBTITLES)
    paths["audio"].write_bytes(audio_bytes(25.0))
    paths["short_audio"].write_bytes(audio_bytes(3.0, "flac"))
    return paths


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def write_broken_media(folder: Path) -> dict[str, str]:
    """Broken documents and videos: file name -> the words their quarantine reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "locked.pdf": (pdf_bytes(encrypted=True), "encrypted PDF"),
        "half.pdf": (_half(pdf_bytes()), "corrupt or truncated PDF"),
        "garbage.pdf": (b"%PDF-1.7\n" + bytes(range(256)) * 8, "corrupt or truncated PDF"),
        "half.mp4": (_half(video_bytes()), "corrupt or truncated video"),  # its index is at the end
        "half.webm": (_half(video_bytes("webm", "libvpx")), "truncated video: its data ends at"),
        "noise.mp4": (video_without_decodable_frames(), "no decodable video frames"),
        "sound_only.mp4": (audio_bytes(1.0, "flac"), "no video stream"),
        "half.wav": (_half(audio_bytes(4.0)), "truncated audio"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: reason for name, (_, reason) in files.items()}


def pcm_wav_bytes(valid_bits: int, container_bits: int, *, big_endian: bool = False, rate: int = 16000) -> bytes:
    """Two seconds of a 440 Hz tone at half scale, as integer PCM in any container width, written
    the way other tools do: RIFX for big-endian, WAVE_FORMAT_EXTENSIBLE for valid bits < container."""
    e, width = (">" if big_endian else "<"), container_bits // 8
    t = np.arange(rate * 2) / rate
    ints = np.round(0.5 * np.sin(2 * np.pi * 440 * t) * (2 ** (valid_bits - 1) - 1)).astype(np.int64)
    ints <<= container_bits - valid_bits
    data = b"".join(int(v).to_bytes(width, "big" if big_endian else "little", signed=True) for v in ints)
    if valid_bits == container_bits:
        fmt = struct.pack(e + "HHIIHH", 1, 1, rate, rate * width, width, container_bits)
    else:
        fmt = struct.pack(e + "HHIIHHHHI", 0xFFFE, 1, rate, rate * width, width, container_bits, 22, valid_bits, 4)
        fmt += struct.pack(e + "H", 1) + bytes.fromhex("000000001000800000aa00389b71")
    body = b"WAVE" + b"fmt " + struct.pack(e + "I", len(fmt)) + fmt + b"data" + struct.pack(e + "I", len(data)) + data
    return (b"RIFX" if big_endian else b"RIFF") + struct.pack(e + "I", len(body)) + body
