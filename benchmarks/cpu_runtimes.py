"""Benchmark: the image tower's forward pass alone, per runtime and precision, on this CPU (issue 17:
which well-kept runtime gets closest to the CPU's peak). ViT-B/32's exact architecture with random
weights (the real model's speed), batches of 16 preprocessed 224×224 images, all in one process:

- PyTorch fp32 eager (the baseline every ratio is against), TorchScript frozen with oneDNN fusions,
  and torch.compile (inductor, compiled on the warm-up batch),
- PyTorch with dynamic int8 quantization of the linear layers,
- OpenVINO fp32 and (where the CPU has it natively) bf16, if `openvino` is installed,
- ONNX Runtime fp32 and int8, through mm_assets' own encoder, if `onnxruntime` is installed;

each with its minimum cosine to PyTorch fp32 (the bar for a default runtime is 0.999).

    PYTHONPATH=. python benchmarks/cpu_runtimes.py [--batches 6]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPModel

from benchmarks.scratch import scratch_dir
from mm_assets.config import EncoderConfig
from mm_assets.encoders.clip import ClipEncoder, ImageFeatures
from mm_assets_tests.tiny_models import build_vit_b32_clip

BATCH = 16


def images_per_second(run, pixels: np.ndarray, batches: int) -> tuple[float, np.ndarray]:
    out = run(pixels)  # warm-up (and the output compared)
    start = time.perf_counter()
    for _ in range(batches):
        run(pixels)
    return BATCH * batches / (time.perf_counter() - start), np.asarray(out, dtype=np.float32)


def cpu_flags() -> str:
    """The flags that decide CPU inference speed here (which of AVX2, AVX-512, bf16, AMX, VNNI)."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.exists() else set()
    return " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx_vnni") if f in flags)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    print(f"CPU flags: {cpu_flags()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    work = scratch_dir("mm-runtimes-")
    os.environ.setdefault("MM_ASSETS_CACHE", str(work / "cache"))
    model_dir = build_vit_b32_clip(work / "vit-b32")
    tower = ImageFeatures(CLIPModel.from_pretrained(model_dir, use_safetensors=True).eval())
    pixels = np.random.default_rng(0).standard_normal((BATCH, 3, 224, 224)).astype(np.float32)
    example = torch.from_numpy(pixels)

    def torch_run(module):
        def run(x):
            with torch.inference_mode():
                return module(torch.from_numpy(x)).numpy()

        return run

    rows = []
    baseline, reference = images_per_second(torch_run(tower), pixels, args.batches)
    rows.append(("PyTorch fp32 (baseline)", baseline, 1.0))
    with torch.inference_mode():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(tower, example).eval()))
    rate, out = images_per_second(torch_run(frozen), pixels, args.batches)
    rows.append(("TorchScript frozen + optimize_for_inference (oneDNN fusions)", rate, min_cosine(reference, out)))
    compiled_tower = torch.compile(tower)
    rate, out = images_per_second(torch_run(compiled_tower), pixels, args.batches)
    rows.append(("torch.compile (inductor)", rate, min_cosine(reference, out)))
    quantized = torch.ao.quantization.quantize_dynamic(tower, {torch.nn.Linear}, dtype=torch.qint8)
    rate, out = images_per_second(torch_run(quantized), pixels, args.batches)
    rows.append(("PyTorch dynamic int8 (linear layers)", rate, min_cosine(reference, out)))

    if importlib.util.find_spec("openvino"):
        import openvino as ov

        converted = ov.convert_model(tower, example_input=example)
        core = ov.Core()
        for hint in ("f32", "bf16"):
            compiled = core.compile_model(
                converted, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
            )
            rate, out = images_per_second(lambda x, c=compiled: c(x)[0], pixels, args.batches)
            rows.append((f"OpenVINO {hint}", rate, min_cosine(reference, out)))
    else:
        print("openvino not installed: skipped")

    if importlib.util.find_spec("onnxruntime"):  # as mm_assets runs it (encoders/runtime.py)
        for dtype, name in (("float32", "ONNX Runtime fp32"), ("int8", "ONNX Runtime int8, one image at a time")):
            encoder = ClipEncoder(EncoderConfig("clip", model=str(model_dir), dtype=dtype, runtime="onnxruntime"))
            rate, out = images_per_second(encoder.embed_pixels, pixels, args.batches)
            rows.append((name, rate, min_cosine(reference, out)))
    else:
        print("onnxruntime not installed: skipped")

    print(f"\n| runtime (batch {BATCH}) | images/s | × PyTorch fp32 | min cosine to PyTorch fp32 |")
    print("|---|---|---|---|")
    for name, rate, cosine in rows:
        print(f"| {name} | {rate:.1f} | {rate / baseline:.2f} | {cosine:.5f} |")


if __name__ == "__main__":
    main()
