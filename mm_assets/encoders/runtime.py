"""Where a CLIP tower's forward pass runs on a CPU: PyTorch, or ONNX Runtime (fp32, or int8 weights).

Measured on 2 AVX2 cores (benchmarks/cpu_runtimes.py, ViT-B/32): ONNX Runtime runs the image tower
about 1.2x faster than PyTorch eager at the same vectors (cosine 1.0000), and with its dynamic int8
quantization of the matrix products about 1.8x (cosine 0.9998). Each tower is exported once per
model weights, precision and exporter, into a cache folder keyed by the weights' hash (a model folder
may be read-only, or a hub cache snapshot that is not ours to write into); an export is written
whole to a temporary name and renamed, so a killed export is never loaded. An ONNX file is a
protobuf graph: loading it runs no code.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mm_assets.config import short_hash

# Bumped when the export below changes what it writes (part of every cache key).
EXPORT_VERSION = "1"
OPSET = 17


# What ONNX Runtime runs here; bf16 and fp16 stay on PyTorch (native on AMX CPUs and GPUs).
ONNX_PRECISIONS = ("float32", "int8")


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnxruntime_usable(requested: str, device: str, exportable: bool) -> bool:
    """Whether ONNX Runtime runs this encoder: ``auto`` on a CPU when it is installed and the encoder
    has exportable towers; ``torch`` never; ``onnxruntime`` must, or this says why it cannot."""
    if requested == "torch":
        return False
    usable = device == "cpu" and exportable and onnxruntime_available()
    if requested == "onnxruntime" and not usable:
        why = (
            "it is not installed (pip install onnxruntime onnx)"
            if not onnxruntime_available()
            else f"it runs CLIP towers on the CPU only (device here: {device})"
        )
        raise ValueError(f"runtime 'onnxruntime' is unavailable: {why}; use runtime 'auto' or 'torch'")
    return usable


def runtime_version(runtime: str) -> str:
    """What is recorded in the encoder metadata: the runtime and its version."""
    package = "onnxruntime" if runtime == "onnxruntime" else "torch"
    return f"{package} {importlib.metadata.version(package)}"


def cache_dir() -> Path:
    """``$MM_ASSETS_CACHE``, else ``$XDG_CACHE_HOME/mm_assets`` (``~/.cache/mm_assets``)."""
    if os.environ.get("MM_ASSETS_CACHE"):
        return Path(os.environ["MM_ASSETS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mm_assets"


@dataclass(frozen=True)
class TowerGraph:
    """One tower as a module from named example inputs to its projected embedding."""

    name: str  # "image" | "text"
    module: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    dynamic_axes: dict[str, dict[int, str]]


class OnnxTower:
    """An ONNX Runtime session for one exported tower.

    ``one_row_at_a_time``: int8 graphs quantize activations with one scale per call, taken over the
    whole input, so a row's vector would depend on the rows beside it (and a text's on the padding
    its batch needs). Run alone, each row's vector depends on its content only: the same image gives
    the same vector in any batch and as a query (measured: 3-15% slower than batches of 32)."""

    def __init__(self, path: Path, one_row_at_a_time: bool = False):
        import onnxruntime as ort

        self.one_row_at_a_time = one_row_at_a_time
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Decode threads share these cores: idle ONNX Runtime workers must not spin on them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, **inputs: np.ndarray) -> np.ndarray:
        if not self.one_row_at_a_time:
            return self.session.run(None, inputs)[0]
        return np.concatenate([self.session.run(None, _unpadded_row(inputs, i))[0] for i in range(_rows(inputs))])


def _rows(inputs: dict[str, np.ndarray]) -> int:
    return len(next(iter(inputs.values())))


def _unpadded_row(inputs: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Row i alone; with an attention mask, without the padding its batch added."""
    row = {name: value[i : i + 1] for name, value in inputs.items()}
    if "attention_mask" in row:
        tokens = row["attention_mask"][0].astype(bool)
        row = {name: value[:, tokens] for name, value in row.items()}
    return row


def load_onnx_tower(tower: TowerGraph, weights: str, precision: str) -> OnnxTower:
    """The tower's ONNX Runtime session, exported on first use for these weights and precision."""
    key = short_hash(
        {
            "weights": weights,
            "tower": tower.name,
            "precision": precision,
            "export": EXPORT_VERSION,
            "torch": torch.__version__,
            "onnxruntime": importlib.metadata.version("onnxruntime"),
        }
    )
    path = cache_dir() / "onnx" / key / f"{tower.name}-{precision}.onnx"
    one_row_at_a_time = precision == "int8"
    if path.exists():
        try:
            return OnnxTower(path, one_row_at_a_time)
        except Exception:  # damaged since it was written (a disk, a hand): export it again
            path.unlink()
    _export(tower, path, precision)
    return OnnxTower(path, one_row_at_a_time)


def _export(tower: TowerGraph, path: Path, precision: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        exported = Path(tmp) / "fp32.onnx"
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # tracer and deprecation chatter about transformers' Python branches
            torch.onnx.export(
                tower.module,
                tuple(tower.inputs.values()),
                exported,
                input_names=list(tower.inputs),
                output_names=["embedding"],
                dynamic_axes={**tower.dynamic_axes, "embedding": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,  # the TorchScript exporter: no onnxscript dependency, dynamic axes as named
            )
        if precision == "int8":
            exported = _quantize_int8(exported)
        os.replace(exported, path)


def _quantize_int8(exported: Path) -> Path:
    """Dynamic quantization: int8 weights for every MatMul, activations quantized per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = exported.with_name("int8.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a generic "consider pre-processing" hint on root
    try:
        quantize_dynamic(exported, quantized, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    finally:
        root.setLevel(level)
    return quantized
