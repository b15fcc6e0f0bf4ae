"""Benchmark: `mm-assets serve` against the CLI's cold query, at N vectors of dim 512 (ViT-B/32 shapes).

Measured in one run on synthetic shards (clustered unit vectors, as search_latency.py writes):
- the CLI's cold query (`mm-assets search --json`, a new process: imports, model load, query);
- warm text queries (new texts, then the same texts again) and image uploads through HTTP on
  loopback (p50/p99, one client);
- throughput with 8 concurrent clients (text queries).

    PYTHONPATH=. python benchmarks/serve_latency.py --vectors 100000 [--vectors 1000000]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
import yaml

from benchmarks.scratch import scratch_dir
from benchmarks.search_latency import QUERIES, write_synthetic_shards


def percentiles(times_ms: list[float]) -> str:
    return f"p50 {np.percentile(times_ms, 50):.1f} ms, p99 {np.percentile(times_ms, 99):.1f} ms"


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - start) * 1000)
    return out


def photo_jpeg(seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((1024, 768))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def wait_until_up(session: requests.Session, url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            session.get(f"{url}/api/health", timeout=5).raise_for_status()
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def measure(vectors: int, work: Path, model: Path) -> None:
    from mm_assets.assets.vector_tables import serving_spec
    from mm_assets.config_loading import load_settings
    from mm_assets.encoders.clip import ClipEncoder
    from mm_assets.encoders.identity import encoder_key, record
    from mm_assets.store.vector_db import update_vector_db

    home = work / f"home-{vectors}"
    config = work / f"mm_assets-{vectors}.yaml"
    config.write_text(yaml.safe_dump({"home": str(home), "encoders": [{"name": "clip", "model": str(model)}]}))
    settings = load_settings(config)
    encoder = settings.default_encoder
    key, info = encoder_key(encoder), record(encoder, ClipEncoder(encoder).metadata())
    write_synthetic_shards(settings.layout, key, info, vectors)
    update_vector_db(settings.layout, {key: info}, serving_spec(settings), log=lambda _: None)
    env = {**os.environ, "MM_ASSETS_CONFIG": str(config), "PYTHONPATH": str(Path.cwd())}
    cli = [sys.executable, "-m", "mm_assets.cli"]

    cold = timed(
        lambda q: subprocess.run([*cli, "search", q, "--json"], env=env, check=True, capture_output=True),
        QUERIES[:5],
    )
    port = 8765
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        session = requests.Session()
        wait_until_up(session, url)

        def text(q: str) -> None:
            session.get(f"{url}/api/search", params={"q": q, "k": 10}, timeout=60).raise_for_status()

        def image(jpeg: bytes) -> None:
            files = {"file": ("q.jpg", jpeg, "image/jpeg")}
            session.post(f"{url}/api/search/image", files=files, params={"k": 10}, timeout=60).raise_for_status()

        text("warm up")
        warm_text = timed(text, QUERIES)
        repeated = timed(text, QUERIES)  # the same texts again: their vectors are cached
        jpegs = [photo_jpeg(i) for i in range(20)]
        image(jpegs[0])
        warm_image = timed(image, jpegs)
        queries = [f"{q} ({i})" for i in range(8) for q in QUERIES[:20]]
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as clients:
            list(clients.map(lambda q: requests.get(f"{url}/api/search", params={"q": q}, timeout=120), queries))
        rate = len(queries) / (time.perf_counter() - start)
    finally:
        server.terminate()
        server.wait(30)
    print(f"\n{vectors:,} vectors x 512")
    print(f"  CLI cold query (new process each time): {percentiles(cold)}")
    speedup = np.median(cold) / np.median(warm_text)
    print(f"  HTTP warm text query: {percentiles(warm_text)} ({speedup:.0f}x faster than the CLI at p50)")
    print(f"  HTTP warm text query asked again (vector cached): {percentiles(repeated)}")
    print(f"  HTTP warm image upload (1024x768 JPEG): {percentiles(warm_image)}")
    print(f"  8 concurrent clients, text: {rate:.1f} queries/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", type=int, action="append", help="corpus sizes (default 100000)")
    args = parser.parse_args()

    from mm_assets_tests.tiny_models import build_vit_b32_clip

    work = scratch_dir("mm-serve-")
    model = build_vit_b32_clip(work / "vit-b32")
    flags = open("/proc/cpuinfo").read()
    print(f"{os.cpu_count()} CPUs, avx512_bf16: {'avx512_bf16' in flags}, amx: {'amx_bf16' in flags}")
    for n in args.vectors or [100_000]:
        measure(n, work, model)


if __name__ == "__main__":
    main()
