"""Benchmark: `mm-assets run` over camera-sized JPEGs with a ViT-B/32-shaped CLIP, against the
tutorial's approach (full PIL decode -> CLIPProcessor -> batches of 16 -> get_image_features)
measured in the same process on the same files.

    python benchmarks/embed_photos.py --photos 300 [--baseline 64] [--dtype float32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

SIZES = [(640, 480), (1600, 1200), (1920, 1080), (3000, 2000), (4032, 3024)]


def write_photos(folder: Path, n: int) -> list[Path]:
    """Smooth, photo-like JPEGs (blurred noise compresses like real photos, unlike flat colours)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        small = Image.fromarray(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8))
        image = small.resize((w, h), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(2))
        path = folder / f"photo_{i:04d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def tutorial_baseline(model_dir: Path, paths: list[Path]) -> float:
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(model_dir, use_safetensors=True).eval()
    processor = CLIPProcessor.from_pretrained(model_dir)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(paths), 16):
            images = [Image.open(p).convert("RGB") for p in paths[i : i + 16]]
            model.get_image_features(**processor(images=images, return_tensors="pt"))
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--baseline", type=int, default=64, help="photos for the tutorial baseline")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from dagster import DagsterInstance

    from mm_assets.config import EncoderConfig, Settings
    from mm_assets.runs import run_pipeline
    from mm_assets_tests.tiny_models import build_vit_b32_clip

    work = Path(tempfile.mkdtemp(prefix="mm-bench-"))
    t0 = time.perf_counter()
    paths = write_photos(work / "photos", args.photos)
    megapixels = sum(Image.open(p).width * Image.open(p).height for p in paths) / 1e6
    print(f"wrote {len(paths)} JPEGs ({megapixels / len(paths):.1f} MP average) in {time.perf_counter() - t0:.0f}s")
    model_dir = build_vit_b32_clip(work / "vit-b32")

    baseline = tutorial_baseline(model_dir, paths[: args.baseline])
    print(f"tutorial approach, fp32, batch 16: {baseline:.2f} images/s on {args.baseline} photos")

    settings = Settings(
        home=work / "home",
        encoders=(
            EncoderConfig(
                "clip", model=str(model_dir), dtype=args.dtype, batch_size=args.batch_size, modalities=("image",)
            ),
        ),
        decode_workers=os.cpu_count() or 1,
    )
    with DagsterInstance.ephemeral() as instance:
        start = time.perf_counter()
        summary = run_pipeline(
            settings,
            [work / "photos"],
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        wall = time.perf_counter() - start
        assert summary.ok, summary.lines()
        (record,) = instance.fetch_materializations(
            __import__("dagster").AssetKey(["embeddings", "clip"]), limit=1
        ).records
        meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
    stages = {k.removeprefix("image_seconds_"): v for k, v in meta.items() if k.startswith("image_seconds_")}
    print(
        f"mm-assets run (ingest + chunk + embed + vector tables), {args.dtype}: {len(paths) / wall:.2f} images/s "
        f"end to end ({wall:.1f}s)"
    )
    print(f"  embedding asset alone: {meta['image_per_second']:.2f} images/s; stage seconds {stages}")
    print(
        f"  ratio to the tutorial approach: end to end {len(paths) / wall / baseline:.2f}x, "
        f"embedding stage {meta['image_per_second'] / baseline:.2f}x"
    )


if __name__ == "__main__":
    main()
