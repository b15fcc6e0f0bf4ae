"""Benchmark: text embedding batched by length (what the embedding asset does) against encoding one
window at a time, on the same windows, ViT-B/32-shaped text tower, in one process.

    PYTHONPATH=. python benchmarks/embed_texts.py [--windows 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.scratch import scratch_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--one-at-a-time", type=int, default=200, help="windows for the baseline")
    args = parser.parse_args()

    from mm_assets.config import EncoderConfig
    from mm_assets.encoders.clip import ClipEncoder
    from mm_assets.encoders.embed import embed_texts
    from mm_assets_tests.tiny_models import build_vit_b32_clip

    rng = np.random.default_rng(0)
    words = "the a dog beach mountain river city night photo of on in with two people walking".split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(3, 60)))) for _ in range(args.windows)]
    model = build_vit_b32_clip(scratch_dir("mm-texts-") / "vit-b32")
    for dtype in ("float32", "auto"):
        encoder = ClipEncoder(EncoderConfig("clip", model=str(model), dtype=dtype, batch_size=64))
        encoder.embed_texts(texts[:8])  # warm-up
        start = time.perf_counter()
        for text in texts[: args.one_at_a_time]:
            encoder.embed_texts([text])
        single = args.one_at_a_time / (time.perf_counter() - start)
        stats = embed_texts(encoder, list(enumerate(texts)), lambda ids, vectors: None)
        batched = stats.embedded / stats.wall
        print(
            f"[{dtype} -> {encoder.precision}] one at a time: {single:.1f} texts/s; "
            f"batched by length (64): {batched:.1f} texts/s = {batched / single:.1f}x"
        )


if __name__ == "__main__":
    main()
