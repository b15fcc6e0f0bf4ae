"""Ingest batches: a manifest of new/changed files, and the index of what has been batched already."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import pyarrow as pa

from mm_assets.config import short_hash
from mm_assets.formats.reading import Boundary
from mm_assets.ingest.discover import FoundFile, Rejected, new_or_changed, walk_sources
from mm_assets.store.layout import Layout
from mm_assets.store.tables import SEEN_SCHEMA


def load_seen(layout: Layout) -> dict[str, tuple[int, int]]:
    store = layout.store
    if not store.exists(store.SEEN_INDEX):
        return {}
    t = store.read_table(store.SEEN_INDEX).to_pydict()
    return dict(zip(t["path"], zip(t["size"], t["mtime_ns"])))


def _save_seen(layout: Layout, seen: dict[str, tuple[int, int]]) -> None:
    paths = list(seen)
    layout.store.write_table(
        layout.store.SEEN_INDEX,
        pa.table(
            {"path": paths, "size": [seen[p][0] for p in paths], "mtime_ns": [seen[p][1] for p in paths]},
            schema=SEEN_SCHEMA,
        ),
    )


def create_batch(layout: Layout, sources, max_files: int | None = None) -> str | None:
    """Discover new or changed files under ``sources``; write their manifest; return the batch id.

    The manifest is written before the seen-index, so a crash in between only re-batches files
    (harmless: content addressing makes the second batch free), never drops them.
    """
    seen = load_seen(layout)
    files, rejected = new_or_changed(walk_sources(sources), seen)
    if max_files is not None:
        files = files[:max_files]
    if not files and not rejected:
        return None
    now = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    batch = f"b{now}-{short_hash([[asdict(f) for f in files], [asdict(r) for r in rejected]], 8)}"
    layout.store.write_json(
        layout.store.manifest(batch),
        {
            "batch": batch,
            "created_at": time.time(),
            "sources": [str(s) for s in sources],
            "files": [asdict(f) for f in files],
            "rejected": [asdict(r) for r in rejected],
        },
    )
    seen.update({f.path: (f.size, f.mtime_ns) for f in files})
    seen.update({r.path: (-1, -1) for r in rejected})
    _save_seen(layout, seen)
    return batch


@dataclass(frozen=True)
class Manifest:
    files: list[FoundFile]
    rejected: list[Rejected]
    boundary: Boundary  # the source folders the batch was discovered in: the only ones its files may read


def read_manifest(layout: Layout, batch: str) -> Manifest:
    key = layout.store.manifest(batch)
    if not layout.store.exists(key):
        raise FileNotFoundError(
            f"no manifest for batch {batch!r} at {layout.store.uri(key)}; batches are created by discovery"
        )
    m = layout.store.read_json(key)
    return Manifest(
        [FoundFile(**f) for f in m["files"]], [Rejected(**r) for r in m["rejected"]], Boundary.of(m["sources"])
    )
