"""Hybrid search: the vector ranking fused with BM25's by reciprocal rank fusion (Cormack et al.),
so that rare words (codes, names) the model cannot tell apart still find their chunk."""

from __future__ import annotations

from collections.abc import Callable

# How far down each list (vectors, BM25) fusion looks, and its constant (60, as in Cormack et al.:
# a hit's fused score is the sum of 1 / (60 + its rank) in each list).
HYBRID_DEPTH = 100
RRF_K = 60


def fused_ranking(
    ranked: list[tuple], bm25: list[tuple[str, float]], distance_of: Callable[[str], float]
) -> list[tuple[str, float, float]]:
    """(chunk id, cosine distance, fused score), best first, from the vector ranking ``ranked``
    ((chunk id, distance, ...) best first) and BM25's. A chunk found by its words alone gets its
    distance from ``distance_of``, and is left out where that raises KeyError (a text chunk this
    encoder has no vector for)."""
    fused: dict[str, float] = {}
    for ranking in (ranked, bm25):
        for rank, (chunk_id, *_) in enumerate(ranking, 1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    distances = {chunk_id: distance for chunk_id, distance, *_ in ranked}
    for chunk_id in fused.keys() - distances.keys():
        try:
            distances[chunk_id] = distance_of(chunk_id)
        except KeyError:
            pass
    return [(c, distances[c], fused[c]) for c in sorted(fused, key=lambda c: (-fused[c], c)) if c in distances]
