"""Evaluation: labelled pairs, a split fixed by content hash, and rank-based retrieval metrics."""
