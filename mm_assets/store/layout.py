"""Where everything lives under the home folder (one place, so paths are never spelled twice)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    home: Path

    @property
    def manifests(self) -> Path:
        return self.home / "manifests"

    @property
    def seen_index(self) -> Path:
        return self.home / "state" / "seen.parquet"

    @property
    def db_path(self) -> Path:
        return self.home / "vectors.duckdb"

    def serving_dir(self, build: str) -> Path:
        """Matrices for exact search, one folder per vector-database build (referenced by it)."""
        return self.home / "serving" / build

    @property
    def evaluations(self) -> Path:
        """Evaluation history: not derived from shards, so not inside the rebuildable vector database."""
        return self.home / "evaluations.duckdb"

    def model_dir(self, encoder_name: str) -> Path:
        """Where a fine-tuned encoder's model is written."""
        return self.home / "models" / encoder_name

    def manifest(self, batch: str) -> Path:
        return self.manifests / f"{batch}.json"

    def shard_dir(self, asset: str, encoder_key: str | None = None) -> Path:
        base = self.home / "shards" / asset
        return base / encoder_key if encoder_key else base

    def shard(self, asset: str, batch: str, encoder_key: str | None = None) -> Path:
        return self.shard_dir(asset, encoder_key) / f"{batch}.parquet"

    def encoder_record(self, encoder_key: str) -> Path:
        """Metadata of the model that wrote an embeddings shard folder (read by vector_tables)."""
        return self.shard_dir("embeddings", encoder_key) / "encoder.json"
