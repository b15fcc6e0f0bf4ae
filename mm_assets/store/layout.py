"""Where everything lives (one place, so paths are never spelled twice).

Two roots: the shard store (manifests, shards, encoder records, discovery state: the source of truth,
local or on object storage) and the local home folder (the derived DuckDB file and its serving
matrices, evaluation history, fine-tuned models). By default the store is the home folder itself.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mm_assets.store.shards import ShardStore


@dataclass(frozen=True)
class Layout:
    home: Path
    store_url: str | None = None

    @cached_property
    def store(self) -> ShardStore:
        # Opened on first use: loading the definitions must not need s3fs or credentials, and the
        # encoders (which use this module through the config) must not need fsspec or pyarrow.
        from mm_assets.store.shards import ShardStore

        return ShardStore(self.store_url or self.home)

    @property
    def db_path(self) -> Path:
        """The vector database: a folder of segments and the pointer to the generation served."""
        return self.home / "vectors"

    @property
    def calibrations(self) -> Path:
        """Score calibrations per encoder key (JSON, replaced whole): search reads them while evaluation
        writes, and a DuckDB file would lock one out of the other."""
        return self.home / "calibration"

    @property
    def flags(self) -> Path:
        """Moderation flags: derived from the vectors and the policies (policy_flags rewrites them)."""
        return self.home / "flags.duckdb"

    @property
    def duplicates(self) -> Path:
        """What the duplicates asset compared and found (only it opens this file)."""
        return self.home / "duplicates.duckdb"

    @property
    def duplicate_pairs(self) -> Path:
        """The duplicate pairs search collapses by: Parquet replaced whole, read while it is rewritten."""
        return self.home / "duplicate_pairs.parquet"

    @property
    def evaluations(self) -> Path:
        """Evaluation history: not derived from shards, so not inside the rebuildable vector database."""
        return self.home / "evaluations.duckdb"

    def model_dir(self, encoder_name: str) -> Path:
        """Where a fine-tuned encoder's model is written."""
        return self.home / "models" / encoder_name

    @property
    def writer_lock(self) -> Path:
        """Held by the one process rebuilding the vector database."""
        return self.home / ".vector_tables.lock"

    def batches(self) -> list[str]:
        """Every ingest batch ever created, oldest first (ids start with their creation time)."""
        return [key.rpartition("/")[2].removesuffix(".json") for key in self.store.list("manifests", ".json")]


def segment_path(vectors: Path, name: str) -> Path:
    """A segment's rows (a DuckDB file) under the vector database folder."""
    return vectors / "segments" / f"{name}.duckdb"


def segment_dir(vectors: Path, name: str) -> Path:
    """A segment's serving matrices (store/matrices.py), beside its rows."""
    return vectors / "segments" / name


@contextmanager
def replaced_atomically(path: Path):
    """A temporary path beside ``path`` to write the whole file to, renamed over ``path`` when the
    block succeeds: a reader sees the old file or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomically(path: Path, text: str) -> None:
    """Write a whole text file under a temporary name, then rename it."""
    with replaced_atomically(path) as tmp:
        tmp.write_text(text)
