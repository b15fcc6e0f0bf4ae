"""Which precision to embed in: reduced where the hardware computes it fast, else float32."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mm_assets.config import EncoderConfig

# Minimum cosine between reduced-precision and float32 embeddings for "auto" to keep the reduced one.
MIN_COSINE_TO_FP32 = 0.999


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """AVX512-BF16 or AMX-BF16 (recent Xeon / Zen 4+): bf16 matmuls at about twice the fp32 rate."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    flags = {f for line in cpuinfo.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def precision_check_passes(config: EncoderConfig, precision: str, cosine: float) -> bool:
    """Whether a precision and runtime checked on the fixed check inputs stay: within
    MIN_COSINE_TO_FP32 of PyTorch float32, or asked for by name (a named dtype with a named runtime,
    or int8, which has one runtime); otherwise the encoder falls back (Encoder._set_precision)."""
    named = config.dtype != "auto" and (config.runtime != "auto" or precision == "int8")
    return cosine >= MIN_COSINE_TO_FP32 or named


# Device files a GPU driver creates; without any, torch finds no GPU, so `device: auto` is the CPU.
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd")


def surely_cpu(device: str) -> bool:
    """The device is the CPU, known without importing torch (1-2 s): configured so, or ``auto`` on a
    machine without any GPU driver."""
    return device == "cpu" or (device == "auto" and not any(Path(f).exists() for f in GPU_DEVICE_FILES))


@lru_cache(maxsize=8)
def resolve_precision(dtype: str, device: str, int8_runtime: bool = False) -> str:
    """``auto``: bf16 (or fp16 on GPUs without bf16) where native; on other CPUs int8 when a runtime
    with fast int8 matrix products is there (ONNX Runtime: AVX2's integer multiply-adds run the
    ViT's matrix products about 1.5x faster than its fp32 FMAs), else float32. Whatever it picks is
    kept only within MIN_COSINE_TO_FP32 of float32 (Encoder._set_precision)."""
    if dtype != "auto":
        return dtype
    if not surely_cpu(device):
        import torch  # only here: config and the export loader stay importable without paying for torch

        if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if cpu_has_native_bf16():
        return "bfloat16"
    return "int8" if int8_runtime else "float32"
