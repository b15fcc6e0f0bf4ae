"""The duplicates scan (store/close_pairs.py): its shortlist finds the pairs that comparing every
pair finds, and chunks of one file are never compared with each other."""

import numpy as np
import pytest

from mm_assets.store import close_pairs as scan
from mm_assets.store.close_pairs import PairRule, Rows, close_pairs


def _corpus(n: int, dim: int, copies: int, chunks_per_file: int, seed: int = 0) -> Rows:
    """Clustered unit vectors (topics) with ``copies`` planted near-copies (cosine about 0.99), a file
    each ``chunks_per_file`` rows."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(50, dim))
    x = topics[rng.integers(0, len(topics), n)] + rng.normal(size=(n, dim))
    originals, planted = rng.choice(n, (2, copies), replace=False)
    scale = 0.1 * np.linalg.norm(x[originals], axis=1, keepdims=True) / np.sqrt(dim)
    x[planted] = x[originals] + rng.normal(size=(copies, dim)) * scale
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return Rows(x.astype(np.float32), (np.arange(n) // chunks_per_file).astype(np.uint64), np.arange(n))


def _pairs(found) -> set[tuple[int, int]]:
    q, r, _ = found
    return set(zip(q.tolist(), r.tolist()))


def test_the_shortlist_finds_the_pairs_every_comparison_finds(monkeypatch):
    rows = _corpus(6000, 32, copies=300, chunks_per_file=2)
    rule = [PairRule(0.95, most=16)]
    [exact], everything = close_pairs(rows, np.arange(len(rows)), rule)
    assert everything.cells == 1 and everything.products > 0.99 * len(rows) ** 2
    assert len(_pairs(exact)) >= 2 * 290, "each planted copy and its original (but a few in one file), both ways"

    monkeypatch.setattr(scan, "EXACT_PRODUCTS", 0)  # the inverted file, as at a million chunks
    [shortlisted], report = close_pairs(rows, np.arange(len(rows)), rule)
    assert report.cells > 1 and report.products < everything.products / 10
    assert _pairs(shortlisted) == _pairs(exact)
    # Scores are exact cosines, not estimates.
    cosines = np.einsum("ij,ij->i", rows.matrix[shortlisted[0]], rows.matrix[shortlisted[1]])
    np.testing.assert_allclose(np.sort(shortlisted[2]), np.sort(cosines), rtol=1e-5)


@pytest.mark.parametrize("exact_products", [scan.EXACT_PRODUCTS, 0])
def test_one_files_chunks_are_never_compared_with_each_other(monkeypatch, exact_products):
    """One long file of near-identical windows (a log dump): nothing to pair, nothing computed; a
    second small file is compared with it, not the long file with itself."""
    monkeypatch.setattr(scan, "EXACT_PRODUCTS", exact_products)
    windows = np.tile(np.array([[1.0, 0.0, 0.0]], np.float32), (3000, 1))
    one_file = Rows(windows, np.zeros(3000, np.uint64), np.arange(3000))
    [found], report = close_pairs(one_file, np.arange(3000), [PairRule(0.9, most=4)])
    assert report.products == 0 and not len(found[0])

    two_files = Rows(
        np.vstack([windows, [[1.0, 0.0, 0.0]] * 10]),
        np.r_[np.zeros(3000), np.ones(10)].astype(np.uint64),
        np.arange(3010),
    )
    [found], report = close_pairs(two_files, np.arange(3010), [PairRule(0.9, most=4)])
    assert report.products <= 2 * 3000 * 10, "each window with the small file's rows, and back"
    q, r, _ = found
    assert np.all(two_files.files[q] != two_files.files[r]) and set(q.tolist()) == set(range(3010))
