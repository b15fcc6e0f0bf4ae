"""Thin Dagster wrappers: read shards, call domain code, write shards, emit metadata."""
