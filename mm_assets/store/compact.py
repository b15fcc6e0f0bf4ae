"""Compact copies of a serving matrix, searched first and rescored exactly.

int8: each unit vector scaled so its largest component is ±127 (a quarter of the float32 bytes);
binary: one sign bit per dimension (1/32 of them), compared by Hamming distance. Either gives a
shortlist of ``rescore`` candidates whose exact cosine is then read from the float32 matrix (only those
rows: a memory-mapped matrix is paged in for them alone), so the top k are exact whenever the true top
k are on the shortlist. How often that holds, and what it saves, is measured in
benchmarks/compact_vectors.py.
"""

from __future__ import annotations

import numpy as np

COMPACT_KINDS = ("int8", "binary")
# Rows scored per step of the int8 scan: converted to float32 a block at a time, so the float copy
# never exists for the whole table.
_BLOCK = 65536


def int8_codes(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: int8 codes and the float32 scale that maps them back (row ≈ codes * scale)."""
    peak = np.abs(matrix).max(axis=1, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    return np.round(matrix / scale).astype(np.int8), scale[:, 0]


def sign_bits(matrix: np.ndarray) -> np.ndarray:
    """Per row: one bit per dimension, set where the component is positive, packed 8 to a byte."""
    return np.packbits(matrix > 0, axis=1)


def approximate_similarity(kind: str, codes: np.ndarray, scales: np.ndarray | None, query: np.ndarray) -> np.ndarray:
    """Higher is nearer: int8, the dot product of the decoded rows with the query; binary, minus the
    Hamming distance between sign bits."""
    if kind == "binary":
        return -np.bitwise_count(codes ^ sign_bits(query[None, :])).sum(axis=1, dtype=np.int32).astype(np.float32)
    import torch  # here: the writer (vector_tables, loaded with the definitions) must not import torch

    q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))
    out = np.empty(len(codes), dtype=np.float32)
    for start in range(0, len(codes), _BLOCK):
        # numpy converts int8 to float32 about twice as fast as torch here; torch does the product
        # (numpy's BLAS threads would keep spinning after it: see search/query.py exact_top_rows).
        block = torch.from_numpy(codes[start : start + _BLOCK].astype(np.float32))
        out[start : start + len(block)] = (block @ q).numpy()
    return out * scales
