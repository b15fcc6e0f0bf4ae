"""ONNX Runtime sessions on the CPU, set up one way for every graph the product runs (the CLIP
towers, the int8 scans of the serving matrices). Imports ONNX Runtime only when a session is made."""

from __future__ import annotations

from pathlib import Path


def cpu_session(model: Path | bytes, threads: int | None = None):
    """An ONNX Runtime session on the CPU (a model file or its bytes), all graph optimisations on;
    ``threads``: intra-op threads (default: one per core). Its idle workers do not spin: decode
    threads, and a search's query model, share these cores."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(
        model if isinstance(model, bytes) else str(model), options, providers=["CPUExecutionProvider"]
    )
