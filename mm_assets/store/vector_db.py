"""The vector database: the serving state derived from the shards, kept up to date in place.

``update_vector_db`` applies only the shards written since the generation being served: the paths
they touch, the files and chunks those paths hold, the vectors of new chunks. It writes them as one
new segment with a dead list for the rows they replace (segments.py), in time proportional to the
change. ``compact`` folds the segments into one when it pays. A rebuild from every shard (when the
settings or the layout changed, or an applied shard was rewritten) gives the same live rows as the
updates did. One writer at a time (``single_writer``); readers never wait and never see a half-applied
batch. Deleting the folder loses nothing: rebuild it from shards.
"""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mm_assets.store.duck import VectorDBError
from mm_assets.store.layout import Layout
from mm_assets.store.segment_writer import SegmentWriter
from mm_assets.store.segments import (
    SERVING_VERSION,
    Generation,
    ServingSpec,
    check_generation,
    read_generation,
    remove_unreferenced,
)

# Compaction pays when queries scan many segments, or many stored rows are dead.
COMPACT_AT_SEGMENTS = 8
COMPACT_AT_DEAD_SHARE = 0.25


@dataclass(frozen=True)
class UpdateReport:
    mode: str  # rebuild | update | compact | up to date
    added: dict[str, int]  # table -> rows written
    deleted: dict[str, int]  # table -> rows no longer live
    live: dict[str, int]  # table -> live rows after
    generation: int
    segments: int
    hnsw_seconds: float
    seconds: float
    checks: dict[str, dict] = field(default_factory=dict)  # embedding table -> what _check_vectors found


@contextmanager
def single_writer(layout: Layout):
    """Serialise updates: each starts from the generation the previous one published."""
    layout.home.mkdir(parents=True, exist_ok=True)
    with open(layout.writer_lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _current(root: Path) -> Generation | None:
    """The generation served, if it is whole; None if missing or damaged (then the next update rebuilds)."""
    try:
        generation = read_generation(root)
        check_generation(root, generation)
    except VectorDBError:
        return None
    return generation


def is_up_to_date(layout: Layout, spec: ServingSpec) -> bool:
    """Whether the generation served was built for these settings from exactly the shards in the
    store now (False after a killed update, new shards, or a new default encoder, so rerunning
    `mm-assets run` finishes the job)."""
    generation = _current(layout.db_path)
    return (
        generation is not None
        and generation.version == SERVING_VERSION
        and generation.settings == spec.as_json()
        and generation.inputs == layout.store.all_shards()
    )


def update_vector_db(layout: Layout, records: dict[str, dict], spec: ServingSpec, log=print) -> UpdateReport:
    """Bring the served generation up to the shards in the store (call it under ``single_writer``).

    ``records``: encoder key -> encoder record, for every key with shards (see
    encoders/identity.stored_records); keys not configured now keep their own tables (marked not
    current) so configurations can be compared.
    """
    start = time.perf_counter()
    root = layout.db_path
    root.mkdir(parents=True, exist_ok=True)
    current = _current(root)
    for leftover in remove_unreferenced(root, current):
        log(f"removed {leftover} (no generation uses it)")
    inputs = layout.store.all_shards()
    incremental = (
        current is not None
        and current.version == SERVING_VERSION
        and current.settings == spec.as_json()
        and {e["encoder_key"] for e in current.encoders} == set(records)
        and all(inputs.get(key) == stamp for key, stamp in current.inputs.items())
    )
    if incremental:
        new = {key: stamp for key, stamp in inputs.items() if key not in current.inputs}
        if not new:
            return _report("up to date", current, {}, {}, 0.0, start)
        writer = SegmentWriter(layout, records, spec, current)
        writer.apply(sorted(new))
    else:
        writer = SegmentWriter(layout, records, spec, None)
        writer.rebuild(sorted(inputs))
    generation = writer.publish(inputs, log)
    mode = "update" if incremental else "rebuild"
    return _report(mode, generation, writer.added, writer.deleted, writer.hnsw, start, writer.checks)


def segments_to_merge(generation: Generation) -> list[str]:
    """What a compaction should rewrite, if anything (size-tiered, so the large first segment is not
    rewritten for every few small ones): every segment when many stored rows are dead; the segments
    after the first when there are many of them."""
    stored = sum(n for s in generation.segments for n in s.rows.values())
    names = [s.name for s in generation.segments]
    if generation.dead_rows > COMPACT_AT_DEAD_SHARE * max(stored, 1):
        return names
    return names[1:] if len(names) >= COMPACT_AT_SEGMENTS else []


def compact(
    layout: Layout, spec: ServingSpec, records: dict[str, dict], log=print, force: bool = False
) -> UpdateReport:
    """Fold segments into one when it pays (``segments_to_merge``), or all of them when ``force``:
    their live rows are written as one segment, their dead rows dropped (call it under ``single_writer``)."""
    start = time.perf_counter()
    current = _current(layout.db_path)
    if current is None:
        raise VectorDBError(f"no vector database at {layout.db_path} to compact")
    merged = [s.name for s in current.segments] if force else segments_to_merge(current)
    if not merged or (len(merged) == 1 and not current.dead_rows):
        return _report("up to date", current, {}, {}, 0.0, start)
    writer = SegmentWriter(layout, records, spec, current)
    writer.compact(merged)
    generation = writer.publish(current.inputs, log)
    return _report("compact", generation, writer.added, {}, writer.hnsw, start)


def _report(mode, generation: Generation, added, deleted, hnsw, start, checks=None) -> UpdateReport:
    return UpdateReport(
        mode,
        added,
        deleted,
        generation.live,
        generation.number,
        len(generation.segments),
        hnsw,
        time.perf_counter() - start,
        checks or {},
    )
