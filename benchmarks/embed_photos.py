"""Benchmark: image embedding over camera-sized JPEGs with a ViT-B/32-shaped CLIP (random weights,
the real model's speed), all figures from one process on the same files:

- the tutorial's approach (full PIL decode -> CLIPProcessor -> batches of 16 -> get_image_features),
- the model's forward pass alone on preprocessed batches (fp32 and the 'auto' precision),
- `mm-assets run` end to end, and its embedding asset, for each precision,
- cosine of mm_assets' embeddings to the tutorial's, and of 'auto' to fp32.

    PYTHONPATH=. python benchmarks/embed_photos.py --photos 300 [--baseline 64]
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


def write_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Smooth, photo-like JPEGs (blurred noise compresses like real photos, unlike flat colours)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        small = Image.fromarray(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8))
        image = small.resize((w, h), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(2))
        path = folder / f"photo_{i:04d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def write_distinct_jpegs(folder: Path, n: int, first: int = 0) -> None:
    """n distinct 640×480 JPEGs, quick to write (one marker pixel per file keeps every content hash
    distinct); ``first`` numbers a later set so it differs from an earlier one."""
    folder.mkdir(parents=True, exist_ok=True)
    base = Image.effect_noise((640, 480), 40).convert("RGB")
    for i in range(first, first + n):
        image = base.copy()
        image.putpixel((i % 640, (i // 640) % 480), (i % 256, (i // 256) % 256, 7))
        image.save(folder / f"img_{i:06d}.jpg", quality=85)


def tutorial_baseline(model_dir: Path, paths: list[Path], device: str = "cpu") -> tuple[float, np.ndarray]:
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(model_dir, use_safetensors=True).eval().to(device)
    processor = CLIPProcessor.from_pretrained(model_dir)
    start, out = time.perf_counter(), []
    with torch.inference_mode():
        for i in range(0, len(paths), 16):
            images = [Image.open(p).convert("RGB") for p in paths[i : i + 16]]
            inputs = processor(images=images, return_tensors="pt").to(device)
            out.append(model.get_image_features(**inputs).pooler_output.float().cpu())
    rate = len(paths) / (time.perf_counter() - start)
    return rate, torch.nn.functional.normalize(torch.cat(out), dim=-1).numpy()


def forward_only(encoder, pixels: np.ndarray, repeats: int) -> float:
    encoder.embed_pixels(pixels)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        encoder.embed_pixels(pixels)
    return repeats * len(pixels) / (time.perf_counter() - start)


def pipeline_run(settings, photos: Path) -> tuple[float, dict]:
    import dagster as dg

    from mm_assets.runs import run_pipeline

    with dg.DagsterInstance.ephemeral() as instance:
        start = time.perf_counter()
        summary = run_pipeline(settings, [photos], instance=instance)
        wall = time.perf_counter() - start
        assert summary.ok, summary.lines()
        (record,) = instance.fetch_materializations(dg.AssetKey(["embeddings", "clip"]), limit=1).records
    return wall, {k: v.value for k, v in record.asset_materialization.metadata.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--baseline", type=int, default=64, help="photos for the tutorial baseline")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from mm_assets.config import EncoderConfig, Settings
    from mm_assets.encoders.clip import ClipEncoder
    from mm_assets.encoders.identity import encoder_key
    from mm_assets.formats.images import decode_rgb
    from mm_assets_tests.tiny_models import build_vit_b32_clip

    work = Path(tempfile.mkdtemp(prefix="mm-bench-"))
    t0 = time.perf_counter()
    paths = write_photos(work / "photos", args.photos)
    mp = sum(Image.open(p).width * Image.open(p).height for p in paths) / 1e6 / len(paths)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, cuda {torch.cuda.is_available()}")
    print(f"wrote {len(paths)} JPEGs ({mp:.1f} MP average) in {time.perf_counter() - t0:.0f}s")
    model_dir = build_vit_b32_clip(work / "vit-b32")

    baseline, tutorial_vectors = tutorial_baseline(model_dir, paths[: args.baseline])
    print(f"tutorial approach (fp32, batch 16): {baseline:.2f} images/s on {args.baseline} photos")

    results = {}
    for dtype in ("float32", "auto"):
        config = EncoderConfig(
            "clip", model=str(model_dir), dtype=dtype, batch_size=args.batch_size, modalities=("image",)
        )
        encoder = ClipEncoder(config)
        sample = [decode_rgb(p.read_bytes(), 10**9, encoder.preprocess.shortest_edge) for p in paths[: args.batch_size]]
        pixels = np.stack([encoder.preprocess(im) for im in sample])
        model_rate = forward_only(encoder, pixels, repeats=3)
        settings = Settings(home=work / f"home-{dtype}", encoders=(config,), decode_workers=os.cpu_count() or 1)
        wall, meta = pipeline_run(settings, work / "photos")
        store = settings.layout.store
        table = store.read_all(store.shard_dir("embeddings", encoder_key(config)))
        raw = {r["file_id"]: r["path"] for r in store.read_all(store.shard_dir("raw_files")).to_pylist()}
        chunks = {r["chunk_id"]: raw[r["file_id"]] for r in store.read_all(store.shard_dir("chunks")).to_pylist()}
        by_path = {
            chunks[c]: np.asarray(v, np.float32)
            for c, v in zip(table.column("chunk_id").to_pylist(), table.column("embedding").to_pylist())
        }
        results[dtype] = by_path
        stage = meta["image_per_second"]
        print(
            f"\n[{dtype} -> {encoder.precision}] model forward alone, batch {args.batch_size}: "
            f"{model_rate:.2f} images/s"
        )
        print(
            f"  mm-assets run end to end: {len(paths) / wall:.2f} images/s ({wall:.1f}s) = "
            f"{len(paths) / wall / baseline:.2f}x tutorial"
        )
        print(
            f"  embedding stage: {stage:.2f} images/s = {stage / baseline:.2f}x tutorial, "
            f"{stage / model_rate:.0%} of forward-only"
        )
        print(
            "  stage seconds: "
            + ", ".join(
                f"{k.removeprefix('image_seconds_')} {v}" for k, v in meta.items() if k.startswith("image_seconds_")
            )
        )
        cos = [float(results[dtype][str(p)] @ tutorial_vectors[i]) for i, p in enumerate(paths[: args.baseline])]
        print(f"  cosine to the tutorial's embeddings: min {min(cos):.5f}, mean {np.mean(cos):.5f}")
    cos = [float(results["auto"][k] @ results["float32"][k]) for k in results["float32"]]
    print(f"\nauto vs float32 embeddings: min cosine {min(cos):.5f}, mean {np.mean(cos):.5f}")


if __name__ == "__main__":
    main()
