"""Chunking cost for videos and PDFs, against the simplest way to do the same job, in the same run.

Video: a 640x360 30 fps H.264 clip with a cut every 3.5 s. Baseline: decode every frame and convert
each to a PIL image, then keep one per interval (what a frame-dump script does). Ours:
``sample_video_frames`` (every frame decoded, only kept frames converted; with scene detection, a
small colour histogram per frame).
PDF: pages of text with two figures each. Baseline: PDFium's page text alone. Ours: ``chunk_pdf``
(text windows with boxes, figures, captions), with and without rendered pages.

    PYTHONPATH=. python benchmarks/chunk_media.py [--seconds 60] [--pages 40]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import pypdfium2 as pdfium
from fpdf import FPDF
from transformers import AutoTokenizer

from mm_assets.chunking.documents import chunk_pdf
from mm_assets.chunking.text import TextChunker
from mm_assets.formats.audio_video import sample_video_frames
from mm_assets_tests.media_corpus import _png
from mm_assets_tests.tiny_models import build_tiny_clip


def write_video(path: Path, seconds: int, fps: int = 30) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for i in range(seconds * fps):
            scene = int(i / (3.5 * fps))  # cuts between the 5-s interval frames
            pixels = np.empty((360, 640, 3), np.uint8)
            pixels[:] = (scene * 70 % 255, scene * 130 % 255, scene * 40 % 255)
            x = (i * 7) % 560
            pixels[100:180, x : x + 80] = 255  # motion within the scene
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def naive_frames(path: Path, every: float) -> int:
    kept, due = 0, 0.0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            image = frame.to_image()
            if frame.time >= due:
                image.save(io.BytesIO(), "JPEG", quality=90)
                kept, due = kept + 1, frame.time + every
    return kept


def pdf_bytes(pages: int) -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for p in range(pages):
        pdf.add_page()
        pdf.multi_cell(0, 5, f"Page {p}. " + "The harbour survey counted boats, nets and gulls every morning. " * 25)
        for top, colour in ((150, (200, 30, 30)), (210, (30, 30, 200))):
            pdf.image(io.BytesIO(_png(colour, (400, 300))), x=20, y=top, w=50)
            pdf.set_xy(20, top + 40)
            pdf.cell(0, 5, f"Figure {p}.{top}: a chart of the morning count")
    return bytes(pdf.output())


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--pages", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip.mp4"
        write_video(video, args.seconds)
        base, n_base = timed(lambda: naive_frames(video, 5.0))
        interval, frames = timed(lambda: list(sample_video_frames(
            str(video), every_seconds=5.0, scene_threshold=None, max_frames=10**6, max_side=512)))  # fmt: skip
        scenes, scene_frames = timed(lambda: list(sample_video_frames(
            str(video), every_seconds=5.0, scene_threshold=0.1, max_frames=10**6, max_side=512)))  # fmt: skip
        print(f"video {args.seconds} s 640x360 30 fps ({args.seconds * 30} frames)")
        print(f"  baseline (every frame to PIL): {base:6.2f} s, {n_base} frames kept")
        print(f"  interval sampling:             {interval:6.2f} s, {len(frames)} frames   {base / interval:.2f}x")
        print(f"  interval + scene cuts:         {scenes:6.2f} s, {len(scene_frames)} frames   {base / scenes:.2f}x")

        data = pdf_bytes(args.pages)
        chunker = TextChunker(
            AutoTokenizer.from_pretrained(build_tiny_clip(Path(tmp) / "clip")),
            {"max_tokens": 77, "overlap": 16, "strategy": "heading"},
        )
        params = {"render_pages": False, "image_max_side": 512}

        def text_only():
            doc = pdfium.PdfDocument(data)
            return sum(len(doc[i].get_textpage().get_text_range()) for i in range(len(doc)))

        base, _ = timed(text_only)
        ours, rows = timed(lambda: chunk_pdf("f", data, chunker, params, max_pixels=10**8).rows)
        rendered, _ = timed(
            lambda: chunk_pdf("f", data, chunker, {**params, "render_pages": True}, max_pixels=10**8).rows
        )
        print(f"pdf {args.pages} pages, 2 figures each")
        print(f"  baseline (page text only):     {base:6.2f} s")
        print(f"  chunk_pdf:                     {ours:6.2f} s, {len(rows)} chunks, {args.pages / ours:.1f} pages/s "
              f"({ours / base:.1f}x the baseline's time)")  # fmt: skip
        print(f"  chunk_pdf + rendered pages:    {rendered:6.2f} s, {args.pages / rendered:.1f} pages/s")


if __name__ == "__main__":
    main()
