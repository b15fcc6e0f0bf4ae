"""Compact vectors: int8 and sign-bit copies of each serving matrix shortlist candidates, which are
then ranked exactly; the top k must be the exact top k."""

import json
from pathlib import Path

import numpy as np
import pytest

from mm_assets.cli import main
from mm_assets.encoders.identity import encoder_key
from mm_assets.search.query import search
from mm_assets.store.quantized import QUANTIZED_KINDS, Int8Scan, SignBitScan, int8_codes, sign_bits
from mm_assets.store.served import SegmentVectors


def clustered_unit_vectors(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    """Vectors around a few centres, as embeddings of real collections are (not uniform noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    vectors = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def segment(matrix: np.ndarray, dead: np.ndarray, codes: np.ndarray) -> SegmentVectors:
    ids = np.asarray([f"c{i:06d}" for i in range(len(matrix))])
    int8, scales = int8_codes(matrix)
    compact = {"int8": Int8Scan(int8, scales), "binary": SignBitScan(sign_bits(matrix))}
    return SegmentVectors("s0", matrix, codes, ids, np.argsort(ids), dead, False, compact)


@pytest.mark.parametrize("kind", QUANTIZED_KINDS)
def test_rescored_top_10_equals_the_exact_top_10(kind):
    matrix = clustered_unit_vectors(6000, 512, clusters=30)  # CLIP ViT-B/32's dimension
    rng = np.random.default_rng(1)
    dead = rng.random(len(matrix)) < 0.05
    codes = rng.integers(1, 3, len(matrix)).astype(np.uint8)  # two modalities (codes 1 and 2)
    part = segment(matrix, dead, codes)
    queries = matrix[rng.integers(0, len(matrix), 25)] + 0.05 * rng.standard_normal((25, 512)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    for query in queries:
        for modality in (None, "text"):
            exact = part.top(query, 10, modality)
            shortlisted = part.top(query, 10, modality, quantized=kind, rescore=200)  # of 6,000 rows
            assert [cid for cid, _ in shortlisted] == [cid for cid, _ in exact]
            assert np.allclose([d for _, d in shortlisted], [d for _, d in exact], atol=1e-5)
            rows = [int(cid[1:]) for cid, _ in shortlisted]
            assert not dead[rows].any()


def test_the_copies_are_a_quarter_and_a_thirty_second_of_the_bytes():
    matrix = clustered_unit_vectors(100, 512, clusters=4)
    int8, scales = int8_codes(matrix)
    assert int8.nbytes + scales.nbytes == 100 * (512 + 4) and sign_bits(matrix).nbytes == 100 * 512 // 8
    decoded = int8 * scales[:, None]
    assert ((decoded * matrix).sum(axis=1) / np.linalg.norm(decoded, axis=1)).min() > 0.9999


def test_search_with_compact_vectors_through_the_cli(indexed, tiny_clip, capsys):
    vectors = Path(indexed.db_path) / "segments"
    for suffix in (".int8.npy", ".int8scale.npy", ".bits.npy"):
        assert list(vectors.rglob(f"emb_*{suffix}")), f"every serving matrix has its {suffix} copy"
    exact = search(indexed.db_path, text="a dog on a beach", k=5, default_key=encoder_key(indexed.default_encoder))
    cli = ["--home", str(indexed.home), "--model", str(tiny_clip), "search", "a dog on a beach", "--k", "5"]
    for kind in QUANTIZED_KINDS:
        assert main([*cli, "--compact", kind, "--json"]) == 0
        hits = json.loads(capsys.readouterr().out)
        assert [h["chunk_id"] for h in hits] == [h.chunk_id for h in exact]
    with pytest.raises(ValueError, match="compact must be one of"):
        search(indexed.db_path, text="a dog", compact="float8", default_key=encoder_key(indexed.default_encoder))
