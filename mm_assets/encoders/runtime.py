"""Where a CLIP tower's forward pass runs on a CPU: PyTorch, or ONNX Runtime (fp32, or int8 weights).

Measured on 2 AVX2 cores (benchmarks/cpu_runtimes.py, ViT-B/32): ONNX Runtime runs the image tower
about 1.2x faster than PyTorch eager at the same vectors (cosine 1.0000), and with its dynamic int8
quantization of the matrix products about 1.8x (cosine 0.9998). Each tower is exported once per
model weights, precision and exporter, into a cache folder keyed by the weights' hash (a model folder
may be read-only, or a hub cache snapshot that is not ours to write into); an export is written
whole to a temporary name and renamed, so a killed export is never loaded. An ONNX file is a
protobuf graph: loading it runs no code.

Once both towers are exported and checked, a summary beside them records what the check found and
what the model's files said (dimension, preprocessing, metadata) and the tokenizer is saved with them:
from then on the encoder loads from this folder alone, without torch or transformers
(encoders/exported.py). This module imports neither unless it exports.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mm_assets.hashing import short_hash
from mm_assets.onnx_cpu import cpu_session
from mm_assets.store.layout import write_text_atomically

if TYPE_CHECKING:
    import torch

    from mm_assets.encoders.resolve import ResolvedModel

# Bumped when the export below changes what it writes (part of every cache key).
EXPORT_VERSION = "2"
OPSET = 17
TOWERS = ("image", "text")
EXPORT_SUMMARY = "encoder.json"
TOKENIZER = "tokenizer.json"


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


def normalise_rows(features: np.ndarray) -> np.ndarray:
    """Unit-norm float32 rows (as torch.nn.functional.normalize: a zero row stays zero)."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.maximum(np.linalg.norm(features, axis=1, keepdims=True), np.float32(1e-12))
    return features / norms


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
    the same vector in any batch and as a query. Rows then run side by side, one core each: on 2 AVX2
    cores 26 images/s, against 19 one row at a time on both cores and 22 in batches of 32."""

    def __init__(self, path: Path, one_row_at_a_time: bool = False):
        self.one_row_at_a_time = one_row_at_a_time
        self.session = cpu_session(path, threads=1 if one_row_at_a_time else None)

    def __call__(self, **inputs: np.ndarray) -> np.ndarray:
        if not self.one_row_at_a_time:
            return self.session.run(None, inputs)[0]
        rows = [_unpadded_row(inputs, i) for i in range(_rows(inputs))]
        with ThreadPoolExecutor(max_workers=min(len(rows), os.cpu_count() or 1), thread_name_prefix="onnx") as pool:
            return np.concatenate(list(pool.map(lambda row: self.session.run(None, row)[0], rows)))


def _rows(inputs: dict[str, np.ndarray]) -> int:
    return len(next(iter(inputs.values())))


def _unpadded_row(inputs: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Row i alone; with an attention mask, without the padding its batch added."""
    row = {name: value[i : i + 1] for name, value in inputs.items()}
    if "attention_mask" in row:
        tokens = row["attention_mask"][0].astype(bool)
        row = {name: value[:, tokens] for name, value in row.items()}
    return row


def export_dir(resolved: ResolvedModel, precision: str) -> Path:
    """The cache folder of one model's export in one precision: keyed by its weights and other files,
    and by every library that shapes the export (versions read without importing them)."""
    from mm_assets.encoders.resolve import cache_dir, settings_hash

    versions = {p: importlib.metadata.version(p) for p in ("torch", "transformers", "onnxruntime")}
    key = short_hash(
        {
            "weights": resolved.revision,
            "settings": settings_hash(resolved.local_dir),
            "precision": precision,
            "export": EXPORT_VERSION,
            **versions,
        }
    )
    return cache_dir() / "onnx" / key


def load_onnx_tower(tower: TowerGraph, folder: Path, precision: str) -> OnnxTower:
    """The tower's ONNX Runtime session, exported into ``folder`` on first use."""
    path = folder / f"{tower.name}.onnx"
    one_row_at_a_time = precision == "int8"
    if path.exists():
        try:
            return OnnxTower(path, one_row_at_a_time)
        except Exception:  # damaged since it was written (a disk, a hand): export it again
            path.unlink()
    _export(tower, path, precision)
    return OnnxTower(path, one_row_at_a_time)


def write_export_summary(folder: Path, summary: dict, tokenizer_json: str) -> None:
    """Complete an export: the tokenizer, then the summary (written last, each whole or not at all,
    so a summary means every file beside it is there)."""
    write_text_atomically(folder / TOKENIZER, tokenizer_json)
    write_text_atomically(folder / EXPORT_SUMMARY, json.dumps(summary, indent=1, sort_keys=True))


def read_export_summary(folder: Path) -> dict | None:
    """The summary of a complete export, or None (none yet, or a file of it damaged or gone)."""
    try:
        summary = json.loads((folder / EXPORT_SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    files = [folder / TOKENIZER, *(folder / f"{t}.onnx" for t in TOWERS)]
    return summary if isinstance(summary, dict) and all(f.is_file() for f in files) else None


def _export(tower: TowerGraph, path: Path, precision: str) -> None:
    import torch

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
