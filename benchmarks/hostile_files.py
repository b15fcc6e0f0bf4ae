"""Benchmark: inspection and chunking of hostile-sized files, each in a fresh process (peak RSS, wall).

- a text file that is one line of N MB (no line break, no heading);
- a PDF of N pages of text.

    PYTHONPATH=. python benchmarks/hostile_files.py --text-mb 100 --pdf-pages 5000
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

from benchmarks.scratch import scratch_dir

CHILD = """
import resource, sys, time
from pathlib import Path
from transformers import AutoTokenizer
from mm_assets.chunking.by_kind import chunk_file
from mm_assets.chunking.text import TextChunker
from mm_assets.config import EncoderConfig, Settings
from mm_assets.chunking import chunking_params
from mm_assets_tests.helpers import INSPECT_LIMITS, inspect
from mm_assets.formats.reading import Boundary
path, model = Path(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
row = inspect(path)
inspected = time.perf_counter() - start
settings = Settings(home=path.parent, encoders=(EncoderConfig("clip", model=model),))
params = chunking_params(settings)
chunker = TextChunker(AutoTokenizer.from_pretrained(model), params["text"])
found = chunk_file(row, chunker, params, boundary=Boundary.of([path.parent]), max_pixels=10**8, max_bytes=2**31)
total = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{path.name}: {path.stat().st_size / 1e6:.0f} MB, {row['status']}, inspect {inspected:.1f} s, "
      f"inspect + chunk {total:.1f} s, {len(found.rows):,} chunks, peak RSS {rss:.0f} MB")
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--text-mb", type=float, default=100)
    parser.add_argument("--pdf-pages", type=int, default=5000)
    args = parser.parse_args()

    from fpdf import FPDF

    from mm_assets_tests.tiny_models import build_tiny_clip

    work = scratch_dir("mm-hostile-")
    model = build_tiny_clip(work / "tiny-clip", seed=0)
    words = "harbour boats sail at dawn and return at noon with fish".split()
    line = " ".join(words[i % len(words)] for i in range(int(args.text_mb * 1e6 / 6)))
    (work / "one_line.txt").write_text(line)
    del line
    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    for i in range(args.pdf_pages):
        pdf.add_page()
        pdf.multi_cell(0, 5, f"Page {i}. " + "The lighthouse keeper recorded the weather every morning. " * 20)
    pdf.output(str(work / "many_pages.pdf"))
    for name in ("one_line.txt", "many_pages.pdf"):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", CHILD, str(work / name), str(model)], check=True)
        print(f"  (process wall {time.perf_counter() - start:.1f} s)")
    print(f"this process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
