"""Quantized copies of a serving matrix, searched first and rescored exactly.

int8: each unit vector scaled so its largest component is ±127 (a quarter of the float32 bytes);
binary: one sign bit per dimension (1/32 of them), compared by Hamming distance. Either gives a
shortlist of ``rescore`` candidates whose exact cosine is then read from the float32 matrix (only those
rows: a memory-mapped matrix is paged in for them alone), so the top k are exact whenever the true top
k are on the shortlist. How often that holds, and what it saves, is measured in
benchmarks/quantized_vectors.py.
"""

from __future__ import annotations

import numpy as np

QUANTIZED_KINDS = ("int8", "binary")
_SCAN_ROWS = 1_000_000  # rows per int8 scan session (512 MB of codes at dimension 512)


def int8_codes(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: int8 codes and the float32 scale that maps them back (row ≈ codes * scale)."""
    peak = np.abs(matrix).max(axis=1, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    return np.round(matrix / scale).astype(np.int8), scale[:, 0]


def sign_bits(matrix: np.ndarray) -> np.ndarray:
    """Per row: one bit per dimension, set where the component is positive, packed 8 to a byte."""
    return np.packbits(matrix > 0, axis=1)


class SignBitScan:
    """Similarity by sign bits: minus the Hamming distance to the query's (higher is nearer)."""

    def __init__(self, bits: np.ndarray):
        self.bits = bits

    def __call__(self, query: np.ndarray) -> np.ndarray:
        distance = np.bitwise_count(self.bits ^ sign_bits(query[None, :])).sum(axis=1, dtype=np.int32)
        return -distance.astype(np.float32)


class Int8Scan:
    """Similarity by int8 codes: the query, quantized per call, times every decoded row.

    ONNX Runtime's DynamicQuantizeMatMul does the product with its int8 kernels (6 ms for 100k rows
    on 2 AVX2 cores, against 22 ms for the float32 scan; converting the codes to float32 first took
    60). Its session packs the codes once, on the first query: about 0.3 s and the codes' size again
    in memory per 100k rows."""

    def __init__(self, codes: np.ndarray, scales: np.ndarray):
        self.codes, self.scales = codes, scales
        self._sessions: list = []

    def __call__(self, query: np.ndarray) -> np.ndarray:
        if not len(self.codes):
            return np.zeros(0, np.float32)
        if not self._sessions:  # a session per block of rows: a graph holds at most 2 GB
            self._sessions = [
                _int8_scan_session(self.codes[start : start + _SCAN_ROWS], self.scales[start : start + _SCAN_ROWS])
                for start in range(0, len(self.codes), _SCAN_ROWS)
            ]
        feed = {"query": np.asarray(query, np.float32)[None, :]}
        return np.concatenate([session.run(None, feed)[0][0] for session in self._sessions])


def _int8_scan_session(codes: np.ndarray, scales: np.ndarray):
    from onnx import TensorProto, helper

    from mm_assets.onnx_cpu import cpu_session  # the session settings the encoders use

    n, dim = codes.shape
    weights = {
        "codes": (TensorProto.INT8, np.ascontiguousarray(codes.T)),
        "scales": (TensorProto.FLOAT, np.asarray(scales, np.float32)),
        "zero_points": (TensorProto.INT8, np.zeros(n, np.int8)),
    }
    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeMatMul", ["query", *weights], ["similarity"], domain="com.microsoft")],
        "int8_scan",
        [helper.make_tensor_value_info("query", TensorProto.FLOAT, [1, dim])],
        [helper.make_tensor_value_info("similarity", TensorProto.FLOAT, [1, n])],
        initializer=[
            helper.make_tensor(name, kind, list(array.shape), vals=array.tobytes(), raw=True)
            for name, (kind, array) in weights.items()
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    return cpu_session(model.SerializeToString())
