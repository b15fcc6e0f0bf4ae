"""Which precision to embed in: reduced where the hardware computes it fast, else float32."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

# Minimum cosine between reduced-precision and float32 embeddings for "auto" to keep the reduced one.
MIN_COSINE_TO_FP32 = 0.999


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """AVX512-BF16 or AMX-BF16 (recent Xeon / Zen 4+): bf16 matmuls at about twice the fp32 rate."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    flags = {f for line in cpuinfo.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


@lru_cache(maxsize=8)
def resolve_precision(dtype: str, device: str, int8_runtime: bool = False) -> str:
    """``auto``: bf16 (or fp16 on GPUs without bf16) where native; on other CPUs int8 when a runtime
    with fast int8 matrix products is there (ONNX Runtime: AVX2's integer multiply-adds run the
    ViT's matrix products about 1.5x faster than its fp32 FMAs), else float32. Whatever it picks is
    kept only within MIN_COSINE_TO_FP32 of float32 (Encoder._set_precision)."""
    if dtype != "auto":
        return dtype
    import torch  # only here: config must stay importable without paying for torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if cpu_has_native_bf16():
        return "bfloat16"
    return "int8" if int8_runtime else "float32"
