"""The numpy kernels of every scan over a serving matrix: exact top k, a quantized shortlist
rescored exactly, and the closest candidates per row of a block (store/served.py runs them)."""

from __future__ import annotations

import numpy as np

from mm_assets.store.tables import MODALITY_CODES

# Candidates a quantized copy shortlists for exact rescoring. 1000, not 200: at 1M sign-bit vectors
# the top 10's recall is 0.986 against 0.950, at the same latency (the scan dominates; rescoring
# 1000 rows reads 2 MB). benchmarks/quantized_vectors.py measures both.
RESCORE = 1000


def exact_top_rows(
    matrix: np.ndarray,
    codes: np.ndarray,
    ids: np.ndarray,
    query: np.ndarray,
    k: int,
    modality: str | None,
    dead: np.ndarray | None = None,
):
    """Rows of the k smallest cosine distances among the live rows (ties broken by chunk id), and the
    distances."""
    distances = 1.0 - _query_product(matrix, query)
    excluded = _excluded(codes, modality, dead)
    if excluded is not None:
        distances = np.where(excluded, np.inf, distances)
    k = min(k, int(np.isfinite(distances).sum()))
    if k == 0:
        return np.zeros(0, dtype=np.int64), distances[:0]
    threshold = np.partition(distances, k - 1)[k - 1]
    candidates = np.flatnonzero(distances <= threshold)  # every tie at the boundary, then order
    ordered = candidates[np.lexsort((ids[candidates], distances[candidates]))][:k]
    return ordered, distances[ordered]


# A candidate not to keep, in closest_in_rows' keys.
NOT_A_CANDIDATE = np.iinfo(np.int64).max


def closest_in_rows(keys: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of each row's ``most`` smallest keys other than NOT_A_CANDIDATE. One partial
    sort of the block: however many candidates there are (ten thousand copies of one picture), only
    the kept ones are ever listed."""
    if keys.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    most = min(most, keys.shape[1])
    columns = np.argpartition(keys, most - 1, axis=1)[:, :most].ravel()
    rows = np.repeat(np.arange(keys.shape[0]), most)
    kept = keys[rows, columns] != NOT_A_CANDIDATE
    return rows[kept], columns[kept]


def closest_per_row(rows: np.ndarray, distance: np.ndarray, tiebreak: np.ndarray, most: int) -> np.ndarray:
    """Which candidates (a query row and a distance each) to keep: each row's ``most`` closest, ties
    broken by ``tiebreak``. Their indices, in the candidates' order."""
    if len(rows) == 0 or np.bincount(rows).max() <= most:
        return np.arange(len(rows))
    order = np.lexsort((tiebreak, distance, rows))
    ranked = rows[order]
    place = np.arange(len(order)) - np.searchsorted(ranked, ranked)  # 0 for each row's closest
    return np.sort(order[place < most])


def _query_product(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """matrix @ query for a search, in torch, not numpy: numpy's BLAS threads keep spinning after a
    product and starve the next query's forward pass on the same cores (measured 3x slower end to end
    on 2 cores). Imported here, not with the module: steps that only read vectors in bulk (duplicates,
    moderation: numpy, once per run) never pay torch's import."""
    import torch

    return (torch.from_numpy(matrix) @ torch.from_numpy(query)).numpy()


def rescored_top_rows(
    matrix: np.ndarray,
    similarity: np.ndarray,
    codes: np.ndarray,
    ids: np.ndarray,
    query: np.ndarray,
    k: int,
    modality: str | None,
    dead: np.ndarray | None,
    rescore: int,
):
    """The k nearest of the ``rescore`` live rows a quantized copy finds most similar, by exact cosine
    distance read from the float32 matrix for those rows only; ties broken by chunk id."""
    excluded = _excluded(codes, modality, dead)
    if excluded is not None:
        similarity = np.where(excluded, -np.inf, similarity)
    n = min(max(rescore, k), int(np.isfinite(similarity).sum()))
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    shortlist = np.sort(np.argpartition(-similarity, n - 1)[:n])  # in row order: the memory map reads forward
    distances = 1.0 - _query_product(np.ascontiguousarray(matrix[shortlist]), query)
    best = np.lexsort((ids[shortlist], distances))[:k]
    return shortlist[best], distances[best]


def _excluded(codes: np.ndarray, modality: str | None, dead: np.ndarray | None) -> np.ndarray | None:
    """Rows a query must not return: dead ones, and those of another modality than asked for."""
    excluded = dead if dead is not None and dead.any() else None
    if modality:
        wrong = codes != MODALITY_CODES[modality]
        excluded = wrong if excluded is None else excluded | wrong
    return excluded
