"""Each query row's closest rows of other files at or above a cosine, among up to millions of rows,
without comparing every pair: what the duplicates step asks of the served vectors.

- **Few queries** (a new batch against what is served): every row is compared, exactly.
- **Many** (a first comparison, a changed encoder or threshold): an inverted file. Spherical k-means
  on a sample places about 2·√n centroids; each row joins its nearest cell, and each query is
  compared with the rows of its ``PROBES`` nearest cells only, by exact float32 cosines. A pair is
  missed only when its rows fall in cells the query does not probe; at the cosines duplicates are
  made of (0.9 and up) the two rows are close, so that is rare: benchmarks/duplicates_scale.py
  measures the recall of the exact pairs (at least 0.99 is the goal) and the time.

Either way rows of a query's own file are never compared: rows are sorted by (cell, file), and a
block of queries of one file skips that file's rows, so one file of a million windows compares
nothing with itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mm_assets.formats.images import hamming
from mm_assets.progress import Progress
from mm_assets.store.scans import closest_per_row

# Queries x rows above which the inverted file replaces comparing every pair (~1 s of products at
# dimension 512 on 2 cores): below it, building the cells would cost more than it saves.
EXACT_PRODUCTS = 2**28
PROBES = 8  # cells each query is compared with
SAMPLE_PER_CELL = 32  # rows of the k-means sample per cell
KMEANS_ROUNDS = 8
QUERY_BLOCK = 512  # queries per product
SMALL_RUN = 64  # queries of one file below which they share a block with other files'
BLOCK_CELLS = 2**22  # cosines per product (16 MB): bounds a step's memory
ROW_TILE = 2**16  # rows gathered for one product (128 MB at dimension 512)


@dataclass(frozen=True)
class PairRule:
    """Which pairs of a query a scan keeps: cosine at least ``min_cosine`` and, with ``max_bits``,
    perceptual hashes at most that many bits apart (then ranked by bits, not cosine); the ``most``
    closest, ties to the smallest rank."""

    min_cosine: float
    most: int
    max_bits: int | None = None


@dataclass(frozen=True)
class Rows:
    """The rows a scan compares: unit vectors with, per row, its file's key, its rank for ties (the
    chunk-id order) and its perceptual hash where it has one."""

    matrix: np.ndarray
    files: np.ndarray
    rank: np.ndarray
    hashes: np.ndarray | None = None  # int64
    hashed: np.ndarray | None = None  # bool: the row has a hash

    def __len__(self) -> int:
        return len(self.matrix)


@dataclass
class ScanReport:
    products: int = 0  # cosines computed
    cells: int = 1  # 1: every pair compared
    seconds: float = 0.0


def close_pairs(
    rows: Rows, queries: np.ndarray, rules: list[PairRule], log: Callable[[str], None] | None = None
) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], ScanReport]:
    """Per rule, (query row, row, score) for each query row's kept pairs: the cosine, or the
    differing bits under a hash rule. ``queries`` are row numbers of ``rows``."""
    start = time.perf_counter()
    report = ScanReport()
    found: list[list[tuple]] = [[] for _ in rules]
    queries = np.asarray(queries, np.int64)
    if len(queries) and len(rows) and rules:
        cell_of, probes = _cells(rows.matrix, queries, report)
        work = list(_blocks(rows, queries, cell_of, probes))
        with Progress(sum(len(q) * len(cols) for q, cols in work), "duplicates", log, unit="cosine") as progress:
            for q, cols in work:
                _compare(rows, q, cols, rules, found, report)
                progress(len(q) * len(cols))
    out = []
    for rule, parts in zip(rules, found):
        q, r, score = (np.concatenate(c) for c in zip(*parts)) if parts else (np.zeros(0, np.int64),) * 3
        keep = closest_per_row(q, _distance(rule, score), rows.rank[r], rule.most)
        out.append((q[keep], r[keep], score[keep]))
    report.seconds = time.perf_counter() - start
    return out, report


def compares_every_pair(queries: int, rows: int) -> bool:
    """Whether a scan of this size compares every pair (one cell)."""
    return queries * rows <= EXACT_PRODUCTS


def _distance(rule: PairRule, score: np.ndarray) -> np.ndarray:
    return score if rule.max_bits is not None else -score


def _cells(matrix: np.ndarray, queries: np.ndarray, report: ScanReport) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cell and each query's cells to probe: one cell for all when comparing every pair
    costs less than placing the cells."""
    n = len(matrix)
    if compares_every_pair(len(queries), n):
        return np.zeros(n, np.int64), np.zeros((len(queries), 1), np.int64)
    centroids = spherical_kmeans(matrix, max(PROBES, int(2 * np.sqrt(n))))
    report.cells = len(centroids)
    is_query = np.full(n, -1, np.int64)
    is_query[queries] = np.arange(len(queries))
    cell_of = np.empty(n, np.int64)
    probes = np.empty((len(queries), PROBES), np.int64)
    step = max(1, BLOCK_CELLS // len(centroids))
    for lo in range(0, n, step):
        scores = matrix[lo : lo + step] @ centroids.T
        cell_of[lo : lo + step] = scores.argmax(axis=1)
        asked = np.flatnonzero(is_query[lo : lo + step] >= 0)
        if len(asked):
            probes[is_query[lo + asked]] = np.argpartition(-scores[asked], PROBES - 1, axis=1)[:, :PROBES]
    return cell_of, probes


def spherical_kmeans(matrix: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """``k`` unit centroids fitted on a sample of the rows (cosine k-means, KMEANS_ROUNDS rounds)."""
    rng = np.random.default_rng(seed)
    n = len(matrix)
    sample = np.asarray(matrix[np.sort(rng.choice(n, min(n, SAMPLE_PER_CELL * k), replace=False))], np.float32)
    centroids = sample[rng.choice(len(sample), min(k, len(sample)), replace=False)].copy()
    for _ in range(KMEANS_ROUNDS):
        nearest = np.concatenate(
            [(block @ centroids.T).argmax(axis=1) for block in np.array_split(sample, max(1, len(sample) // 4096))]
        )
        sums = np.zeros_like(centroids)
        np.add.at(sums, nearest, sample)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        filled = norms[:, 0] > 0  # an empty cell keeps its centroid
        centroids[filled] = sums[filled] / norms[filled]
    return centroids


def _blocks(rows: Rows, queries: np.ndarray, cell_of: np.ndarray, probes: np.ndarray):
    """(query rows, rows to compare them with) per product: rows sorted by (cell, file), a cell's
    probing queries by file; a block of one file's queries skips that file's rows."""
    order = np.lexsort((rows.files, cell_of))
    bounds = np.searchsorted(cell_of[order], np.arange(probes.max() + 2))
    asked = np.repeat(queries, probes.shape[1])
    asked_cell = probes.ravel()
    by = np.lexsort((rows.files[asked], asked_cell))
    asked, asked_cell = asked[by], asked_cell[by]
    starts = np.searchsorted(asked_cell, np.arange(probes.max() + 2))
    for cell in range(probes.max() + 1):
        lo, hi = bounds[cell], bounds[cell + 1]
        cell_queries = asked[starts[cell] : starts[cell + 1]]
        if hi == lo or not len(cell_queries):
            continue
        member_files = rows.files[order[lo:hi]]
        for q in _query_blocks(cell_queries, rows.files[cell_queries]):
            spans = [(lo, hi)]
            first = rows.files[q[0]]
            if first == rows.files[q[-1]]:  # one file's queries: the other files' rows only
                a = lo + np.searchsorted(member_files, first, side="left")
                b = lo + np.searchsorted(member_files, first, side="right")
                spans = [(lo, a), (b, hi)]
            tile = min(ROW_TILE, max(1, BLOCK_CELLS // len(q)))
            for s, e in spans:
                for t in range(s, e, tile):
                    yield q, order[t : min(t + tile, e)]


def _query_blocks(queries: np.ndarray, files: np.ndarray):
    """Blocks of at most QUERY_BLOCK queries (sorted by file): a file with many queries in blocks of
    its own (they skip its rows), the few queries of small files together (masked instead)."""
    ends = [*np.flatnonzero(np.diff(files)) + 1, len(files)]
    pending = 0  # start of the small files' block being filled
    at = 0
    for end in ends:
        if end - at >= SMALL_RUN:
            if pending < at:
                yield from _split(queries[pending:at])
            yield from _split(queries[at:end])
            pending = end
        elif end - pending >= QUERY_BLOCK:
            yield from _split(queries[pending:end])
            pending = end
        at = end
    if pending < len(queries):
        yield from _split(queries[pending:])


def _split(queries: np.ndarray):
    for start in range(0, len(queries), QUERY_BLOCK):
        yield queries[start : start + QUERY_BLOCK]


def _compare(rows: Rows, q: np.ndarray, cols: np.ndarray, rules: list[PairRule], found, report: ScanReport) -> None:
    """One product: the cosines of queries ``q`` with rows ``cols``; each rule's hits, of other files,
    reduced to each query's ``most`` closest in the block."""
    report.products += len(q) * len(cols)
    cosine = rows.matrix[q] @ rows.matrix[cols].T
    qi, ci = np.nonzero(cosine >= min(rule.min_cosine for rule in rules))
    other = rows.files[q[qi]] != rows.files[cols[ci]]
    qi, ci = qi[other], ci[other]
    score = cosine[qi, ci]
    for rule, out in zip(rules, found):
        keep = score >= rule.min_cosine
        value = score
        if rule.max_bits is not None:
            keep &= rows.hashed[q[qi]] & rows.hashed[cols[ci]]
            bits = hamming(rows.hashes[q[qi]], rows.hashes[cols[ci]]).astype(np.int64)
            keep &= bits <= rule.max_bits
            value = bits
        local, rk, vk = qi[keep], cols[ci[keep]], value[keep]
        best = closest_per_row(local, _distance(rule, vk), rows.rank[rk], rule.most)  # local: a small bincount
        out.append((q[local[best]], rk[best], vk[best]))
