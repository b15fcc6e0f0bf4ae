"""Benchmark (issue 17): image embedding over camera-sized JPEGs with a ViT-B/32-shaped CLIP (random
weights, the real model's speed), on the same files in the same run:

- the tutorial's approach (full PIL decode -> CLIPProcessor -> batches of 16 -> fp32
  get_image_features) as a whole process: interpreter start, imports, model load, work;
- `mm-assets run` as a whole process (default settings but the encoder's dtype and runtime), for
  PyTorch fp32, ONNX Runtime fp32, int8 and the default (`auto`), with its time per stage, and over an
  empty folder (what starting costs); the ONNX Runtime runs load their export from the cache (as
  every run after a machine's first does), and the default once more with an empty cache (the
  first run: it exports and checks the model);
- the forward pass alone per runtime and precision, and the cosine of each run's vectors to the
  tutorial's.

    PYTHONPATH=. python benchmarks/embed_photos.py --photos 400
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from benchmarks.scratch import scratch_dir

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
    """The tutorial's approach: full PIL decode, CLIPProcessor, batches of 16, fp32 get_image_features."""
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


# The tutorial as its own process: its imports and model load count, as `mm-assets run`'s do.
TUTORIAL_PROCESS = (
    "import sys, numpy; from pathlib import Path; from benchmarks.embed_photos import tutorial_baseline; "
    "paths = [Path(p) for p in open(sys.argv[2]).read().split()]; "
    "numpy.save(sys.argv[3], tutorial_baseline(Path(sys.argv[1]), paths)[1])"
)


def timed(cmd: list[str], **kwargs) -> tuple[float, str]:
    """Wall seconds of a whole process (interpreter start, imports, model load, work) and its stdout."""
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{cmd[:3]} failed:\n{done.stdout}\n{done.stderr}")
    return wall, done.stdout


def tutorial_process(model_dir: Path, paths: list[Path], work: Path) -> tuple[float, np.ndarray]:
    listing, out = work / "tutorial-files.txt", work / "tutorial.npy"
    listing.write_text("\n".join(str(p) for p in paths))
    wall, _ = timed([sys.executable, "-c", TUTORIAL_PROCESS, str(model_dir), str(listing), str(out)])
    return wall, np.load(out)


# The CLI as a user starts it, from the same environment as this script.
MM_ASSETS = str(Path(sys.executable).with_name("mm-assets"))


def run_process(
    model_dir: Path, photos: Path, home: Path, dtype: str, runtime: str, cache: Path | None = None
) -> tuple[float, str]:
    """`mm-assets run` as a user starts it, with one image encoder configured; ``cache``: another
    export cache than this process's (an empty one: the first run on a machine)."""
    config = home.with_suffix(".yaml")
    config.write_text(
        f"encoders:\n  - name: clip\n    model: {model_dir}\n    dtype: {dtype}\n    runtime: {runtime}\n"
        "    modalities: [image]\n"
    )
    env = {**os.environ, "MM_ASSETS_CACHE": str(cache)} if cache else None
    return timed([MM_ASSETS, "--config", str(config), "--home", str(home), "run", str(photos)], env=env)


def forward_only(encoder, pixels: np.ndarray, repeats: int) -> float:
    encoder.embed_pixels(pixels)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        encoder.embed_pixels(pixels)
    return repeats * len(pixels) / (time.perf_counter() - start)


def stored_vectors(home: Path) -> dict[str, np.ndarray]:
    """path -> the vector a run stored for that image."""
    from mm_assets.config_loading import load_settings

    store = load_settings(home.with_suffix(".yaml"), home=home).layout.store
    raw = {r["file_id"]: r["path"] for r in store.read_all(store.shard_dir("raw_files")).to_pylist()}
    chunks = {r["chunk_id"]: raw[r["file_id"]] for r in store.read_all(store.shard_dir("chunks")).to_pylist()}
    (key,) = store.subdirectories(store.shard_dir("embeddings"))
    table = store.read_all(store.shard_dir("embeddings", key))
    return {
        chunks[c]: np.asarray(v, np.float32)
        for c, v in zip(table.column("chunk_id").to_pylist(), table.column("embedding").to_pylist())
    }


# (dtype, runtime) of each `mm-assets run`; the last is the default configuration.
RUNS = [("float32", "torch"), ("float32", "auto"), ("int8", "auto"), ("auto", "auto")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=400)
    args = parser.parse_args()

    from benchmarks.cpu_runtimes import cpu_flags
    from mm_assets.config import EncoderConfig
    from mm_assets.encoders.clip import ClipEncoder
    from mm_assets.formats.images import decode_rgb
    from mm_assets_tests.tiny_models import build_vit_b32_clip

    work = scratch_dir("mm-bench-")
    os.environ.setdefault("MM_ASSETS_CACHE", str(work / "cache"))
    t0 = time.perf_counter()
    paths = write_photos(work / "photos", args.photos)
    mp = sum(Image.open(p).width * Image.open(p).height for p in paths) / 1e6 / len(paths)
    print(f"machine: {os.cpu_count()} CPUs, flags {cpu_flags()}, torch {torch.__version__}")
    print(f"wrote {len(paths)} JPEGs ({mp:.1f} MP average) in {time.perf_counter() - t0:.0f}s")
    model_dir = build_vit_b32_clip(work / "vit-b32")

    print("\nforward pass alone (batch 32, preprocessed pixels), in this process:")
    sample = [decode_rgb(p.read_bytes(), 10**9, 224) for p in paths[:32]]
    for dtype, runtime in RUNS[:3]:
        start = time.perf_counter()
        encoder = ClipEncoder(EncoderConfig("clip", model=str(model_dir), dtype=dtype, runtime=runtime))
        load = time.perf_counter() - start  # the first ONNX Runtime load of a precision exports it
        pixels = np.stack([encoder.preprocess(im) for im in sample])
        rate = forward_only(encoder, pixels, repeats=3)
        cosine = encoder.check_cosine
        print(f"  {dtype}/{encoder.runtime}: {rate:.2f} images/s (load {load:.1f}s, cosine to fp32 {cosine})")

    tutorial_wall, tutorial_vectors = tutorial_process(model_dir, paths, work)
    print(
        f"\ntutorial process (full decode, CLIPProcessor, batch 16, fp32): {tutorial_wall:.1f}s, "
        f"{len(paths) / tutorial_wall:.2f} images/s"
    )
    empty = work / "empty"
    empty.mkdir()
    startup, _ = run_process(model_dir, empty, work / "home-empty", "auto", "auto")
    print(f"`mm-assets run` over an empty folder (interpreter, imports, Dagster instance): {startup:.1f}s")

    print("\n| `mm-assets run`, whole process | wall s | images/s | × tutorial | min cosine to tutorial |")
    print("|---|---|---|---|---|")
    for dtype, runtime, cache in [*((d, r, None) for d, r in RUNS), ("auto", "auto", work / "empty-cache")]:
        home = work / f"home-{dtype}-{runtime}-{'first' if cache else 'cached'}"
        wall, out = run_process(model_dir, work / "photos", home, dtype, runtime, cache)
        vectors = stored_vectors(home)
        cosine = min(float(vectors[str(p)] @ tutorial_vectors[i]) for i, p in enumerate(paths))
        stages = next((line for line in out.splitlines() if line.startswith("time per stage")), "")
        label = f"dtype {dtype}, runtime {runtime}" + (", first run (exports)" if cache else "")
        print(
            f"| {label} | {wall:.1f} | {len(paths) / wall:.2f} | {tutorial_wall / wall:.2f} | {cosine:.5f} |  {stages}"
        )


if __name__ == "__main__":
    main()
