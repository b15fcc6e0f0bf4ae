"""Ingest batches: a manifest of what changed in the source folders (added, edited, deleted), and the
index of what has been batched already."""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import pyarrow as pa

from mm_assets.formats.reading import Boundary
from mm_assets.hashing import short_hash
from mm_assets.ingest.dependencies import Stat, dependencies_of, dependency_content, dependency_state, stat_of
from mm_assets.ingest.discover import FoundFile, Rejected, Seen, find_changes, walk_sources
from mm_assets.ingest.labels import CaptionIndex
from mm_assets.store.layout import Layout
from mm_assets.store.shards import ShardStore
from mm_assets.store.tables import RAW_FILES, SEEN_SCHEMA, upgrade


def load_seen(layout: Layout) -> dict[str, Seen]:
    store = layout.store
    if not store.exists(store.SEEN_INDEX):
        return {}
    t = store.read_table(store.SEEN_INDEX).to_pydict()
    n = len(t["path"])
    batches = t.get("batch", [None] * n)  # indexes written before deletions were tracked lack these
    dependencies = t.get("dependencies", [None] * n)
    states = t.get("dependency_state", [0] * n)
    contents = t.get("dependency_content", [0] * n)
    return {
        path: Seen(size, mtime, batch, tuple(deps or ()), state or 0, content or 0)
        for path, size, mtime, batch, deps, state, content in zip(
            t["path"], t["size"], t["mtime_ns"], batches, dependencies, states, contents
        )
    }


def _save_seen(layout: Layout, seen: dict[str, Seen]) -> None:
    entries = list(seen.values())
    columns = {
        "path": list(seen),
        "size": [e.size for e in entries],
        "mtime_ns": [e.mtime_ns for e in entries],
        "batch": [e.batch for e in entries],
        "dependencies": [list(e.dependencies) for e in entries],
        "dependency_state": [e.dependency_state for e in entries],
        "dependency_content": [e.dependency_content for e in entries],
    }
    layout.store.write_table(layout.store.SEEN_INDEX, pa.table(columns, schema=SEEN_SCHEMA))


@contextmanager
def _one_discovery_at_a_time(layout: Layout):
    """The seen index is read, compared and rewritten: two discoveries at once would lose an update."""
    layout.home.mkdir(parents=True, exist_ok=True)
    with open(layout.home / ".discovery.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def create_batch(
    layout: Layout, sources, max_files: int | None = None, max_file_bytes: int = 512 * 1024 * 1024
) -> str | None:
    """Compare the source folders with the seen index; write a manifest of what was added, edited
    or deleted (and the files whose dependencies changed); return its batch id, None if nothing.

    The manifest is written before the seen-index, so a crash in between only re-batches files
    (harmless: content addressing makes the second batch free), never drops them.
    """
    boundary = Boundary.of(sources)
    with _one_discovery_at_a_time(layout):
        seen = load_seen(layout)
        found = list(walk_sources(sources))
        walked = {f.path: (f.size, f.mtime_ns) for f in found if isinstance(f, FoundFile)}
        stat = _stat_cache(walked)
        captions = CaptionIndex(boundary)

        def state(deps) -> int:
            return dependency_state(list(deps), stat)

        def content(path, deps) -> int:
            return dependency_content(path, list(deps), captions, stat)

        changes = find_changes(found, seen, boundary.roots, state, content)
        if max_files is not None:
            changes.files = changes.files[:max_files]
        if changes.refreshed and not changes:
            _save_seen(layout, seen | changes.refreshed)
        if not changes:
            return None
        now = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        found_now = [[asdict(f) for f in changes.files], [asdict(r) for r in changes.rejected], changes.deleted]
        batch = f"b{now}-{short_hash(found_now, 8)}"
        layout.store.write_json(
            layout.store.manifest(batch),
            {
                "batch": batch,
                "created_at": time.time(),
                "sources": [str(s) for s in sources],
                "files": [asdict(f) for f in changes.files],
                "rejected": [asdict(r) for r in changes.rejected],
                "deleted": [{"path": p, "batch": seen[p].batch} for p in changes.deleted],
            },
        )
        seen.update(changes.refreshed)
        for f in changes.files:
            deps = tuple(dependencies_of(f.path, boundary, max_file_bytes))
            seen[f.path] = Seen(f.size, f.mtime_ns, batch, deps, state(deps), content(f.path, deps))
        seen.update({r.path: Seen(-1, -1, batch) for r in changes.rejected})
        for path in changes.deleted:
            del seen[path]
        _save_seen(layout, seen)
    return batch


def _stat_cache(walked: dict[str, Stat]):
    """Stats of dependencies: from the walk when the file was walked, else one stat call per path."""
    cache = dict(walked)

    def stat(path: str) -> Stat:
        if path not in cache:
            cache[path] = stat_of(path)
        return cache[path]

    return stat


@dataclass(frozen=True)
class Deleted:
    path: str
    batch: str | None  # the batch that last ingested it (where its last row is)


@dataclass(frozen=True)
class Manifest:
    files: list[FoundFile]
    rejected: list[Rejected]
    boundary: Boundary  # the source folders the batch was discovered in: the only ones its files may read
    deleted: list[Deleted]

    def counts(self) -> dict[str, int]:
        """Paths by change as discovery saw them (a move is an addition and a deletion until ingested)."""
        changes = [f.change for f in self.files] + ["rejected"] * len(self.rejected) + ["deleted"] * len(self.deleted)
        return {change: changes.count(change) for change in ("added", "edited", "dependency", "rejected", "deleted")}


def read_manifest(layout: Layout, batch: str) -> Manifest:
    key = layout.store.manifest(batch)
    if not layout.store.exists(key):
        raise FileNotFoundError(
            f"no manifest for batch {batch!r} at {layout.store.uri(key)}; batches are created by discovery"
        )
    m = layout.store.read_json(key)
    return Manifest(
        [FoundFile(**f) for f in m["files"]],
        [Rejected(**r) for r in m["rejected"]],
        Boundary.of(m["sources"]),
        [Deleted(**d) for d in m.get("deleted", [])],
    )


def deleted_rows(store: ShardStore, deleted: list[Deleted]) -> list[dict]:
    """Tombstones: a ``raw_files`` row per deleted path, with the file id and kind it last had (read
    from the batch that ingested it; unknown if that batch has not been ingested)."""
    last: dict[str, dict] = {}
    for batch in sorted({d.batch for d in deleted if d.batch}):
        key = store.shard(RAW_FILES, batch)
        if store.exists(key):
            rows = upgrade(store.read_table(key, ["path", "file_id", "kind"]), RAW_FILES).to_pylist()
            last.update({r["path"]: r for r in rows})
    return [
        {
            "path": d.path,
            "file_id": last.get(d.path, {}).get("file_id"),
            "kind": last.get(d.path, {}).get("kind"),
            "status": "deleted",
            "change": "deleted",
        }
        for d in deleted
    ]


CHANGES = ("added", "edited", "dependency", "moved", "deleted")


def mark_moves(rows: list[dict]) -> dict[str, int]:
    """Call an added file whose content a deleted path of the same batch held a move (a rename, or a
    move between source folders); count the batch's rows by change."""
    gone = {r["file_id"]: r for r in rows if r["change"] == "deleted" and r["file_id"]}
    for r in rows:
        if r["change"] == "added" and r["status"] == "ok" and r["file_id"] in gone:
            r["change"] = "moved"
            gone.pop(r["file_id"])["change"] = "moved_away"
    return {change: sum(1 for r in rows if r["change"] == change) for change in CHANGES}
