"""Retrieval metrics from a similarity matrix and a relevance matrix.

Conventions (chosen so that a model cannot look good by accident):
- Ties count against the model: among equally similar items, relevant ones rank last.
- Recall@K is the fraction of queries with at least one relevant item in the top K (the hit rate
  reported by CLIP-style cross-modal benchmarks).
- MRR uses the rank of the first relevant item; nDCG@10 uses binary gains.
- Queries with no relevant item in the gallery are left out (and counted in ``n_skipped``).
"""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10)


def ranks_of_relevant(similarity: np.ndarray, relevant: np.ndarray) -> list[np.ndarray]:
    """For each query, the 1-based ranks of its relevant gallery items (pessimistic on ties)."""
    out = []
    for scores, rel in zip(similarity, relevant):
        # lexsort: last key is primary -> by descending score, then irrelevant before relevant
        order = np.lexsort((rel.astype(np.int8), -scores))
        out.append(np.flatnonzero(rel[order]) + 1)
    return out


def retrieval_metrics(similarity: np.ndarray, relevant: np.ndarray) -> dict[str, float]:
    similarity = np.asarray(similarity, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if similarity.shape != relevant.shape:
        raise ValueError(f"similarity {similarity.shape} and relevance {relevant.shape} differ in shape")
    keep = relevant.any(axis=1)
    ranks = ranks_of_relevant(similarity[keep], relevant[keep])
    n = len(ranks)
    result: dict[str, float] = {"n_queries": n, "n_skipped": int((~keep).sum()), "n_gallery": similarity.shape[1]}
    if n == 0:
        return result
    first = np.array([r[0] for r in ranks])
    for k in KS:
        result[f"recall@{k}"] = float((first <= k).mean())
    result["mrr"] = float((1.0 / first).mean())
    discounts = 1.0 / np.log2(np.arange(2, 12))  # positions 1..10
    ndcg = []
    for r in ranks:
        dcg = discounts[r[r <= 10] - 1].sum()
        ideal = discounts[: min(len(r), 10)].sum()
        ndcg.append(dcg / ideal)
    result["ndcg@10"] = float(np.mean(ndcg))
    result["chance@1"] = float((relevant[keep].sum(axis=1) / similarity.shape[1]).mean())
    return result
