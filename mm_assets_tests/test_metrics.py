"""Metrics checked against examples computed by hand."""

import math

import numpy as np
import pytest

from mm_assets.evaluation.metrics import retrieval_metrics


def test_hand_computed_example():
    # query 0: relevant item ranked 2nd; query 1: relevant items ranked 1st and 3rd
    sim = np.array([[0.9, 0.8, 0.1], [0.7, 0.2, 0.5]])
    rel = np.array([[False, True, False], [True, False, True]])
    m = retrieval_metrics(sim, rel)
    assert m["recall@1"] == 0.5 and m["recall@5"] == 1.0
    assert m["mrr"] == pytest.approx((1 / 2 + 1) / 2)
    ndcg0 = (1 / math.log2(3)) / 1.0
    ndcg1 = (1 + 1 / math.log2(3)) / (1 + 1 / math.log2(3))  # ranks 1 and 2 (0.7, 0.5 beat 0.2)
    assert m["ndcg@10"] == pytest.approx((ndcg0 + ndcg1) / 2)
    assert m["chance@1"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert m["n_queries"] == 2


def test_ties_count_against_the_model():
    sim = np.ones((1, 4))  # a constant model: everything tied
    rel = np.array([[True, False, False, False]])
    m = retrieval_metrics(sim, rel)
    assert m["recall@1"] == 0.0 and m["mrr"] == pytest.approx(1 / 4)


def test_shared_labels_make_several_items_relevant():
    # two items share the query's label; the first relevant hit is at rank 2
    sim = np.array([[0.1, 0.9, 0.8, 0.7]])
    rel = np.array([[True, False, True, False]])
    m = retrieval_metrics(sim, rel)
    assert m["recall@1"] == 0.0 and m["mrr"] == 0.5 and m["recall@5"] == 1.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)  # relevant at ranks 2 and 4
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx(dcg / idcg)
    assert m["chance@1"] == 0.5


def test_queries_without_relevant_items_are_skipped():
    m = retrieval_metrics(np.array([[0.5, 0.4], [0.3, 0.2]]), np.array([[True, False], [False, False]]))
    assert m["n_queries"] == 1 and m["n_skipped"] == 1 and m["recall@1"] == 1.0
