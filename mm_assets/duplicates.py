"""Duplicates among the served items: exact, near and semantic, grouped.

- **exact**: one file's content under several paths. Content addressing already serves it once (one
  file id); the paths come from the vector database's ``paths`` table.
- **near**: two images or video frames of different files whose perceptual hashes (computed at ingest
  for images, at chunking for frames: ``formats/images.perceptual_hash``) differ in at most
  ``near_bits`` of 64 bits, and whose vectors agree (cosine >= ``near_min_cosine``) where they have
  them: the same picture resized, recompressed, slightly cropped or colour-shifted.
- **semantic**: two chunks of the same modality in different files whose vectors (of the configured
  encoder) have a cosine of at least ``semantic_cosine``: the same scene re-shot, a passage reworded.

The comparison is incremental: each update compares only the chunks new since the last one against
every live chunk, keeps each new chunk's closest ``links_per_chunk`` links of a kind (the pairs stay
O(n) however alike the files are), drops the pairs of chunks no longer served, and publishes every
pair as a Parquet file replaced whole (``duplicate_pairs.parquet``), which search reads to collapse
duplicates (``--dedup``); groups are stars of pairs (``pair_groups``). What was compared lives in
``duplicates.duckdb``, opened by the asset alone; a changed setting or encoder compares everything
again.

The vectors are compared by one scan per modality (store/close_pairs.py): every pair for a small
batch, an inverted file's shortlist for a large one (a first comparison of a million chunks takes
minutes, not the hours of a million squared cosines), never a chunk with its own file's. Near pairs
whose ends both have vectors come from the same scan (hashes compared where the cosine reaches
``near_min_cosine``); the others, by hashes alone.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mm_assets.config import Settings
from mm_assets.config_sections import DuplicatesConfig
from mm_assets.formats.images import hamming
from mm_assets.hashing import short_hash
from mm_assets.store.catalog import choose_encoder_table, chunk_details
from mm_assets.store.close_pairs import PairRule, Rows, close_pairs, compares_every_pair
from mm_assets.store.duck import UnknownEncoder
from mm_assets.store.layout import replaced_atomically
from mm_assets.store.scans import NOT_A_CANDIDATE, closest_in_rows
from mm_assets.store.served import ServedVectors
from mm_assets.store.tables import MODALITY_CODES
from mm_assets.store.vector_db import single_writer

# Bumped when comparing finds something different for the same chunks (part of the fingerprint).
DUPLICATES_VERSION = "2"
LINKS = ("exact", "near", "semantic")
# Hashes (new x all) compared in one step: bounds its memory (~400 MB: differing bits, keys, order).
COMPARE_CELLS = 2**24
CANDIDATES_SCHEMA = pa.schema([("x", pa.string()), ("y", pa.string()), ("score", pa.float64())])
PAIRS_SCHEMA = pa.schema([("a", pa.string()), ("b", pa.string()), ("link", pa.string()), ("score", pa.float64())])
STATE_DDL = [
    "CREATE TABLE IF NOT EXISTS compared_with (fingerprint VARCHAR)",
    "CREATE TABLE IF NOT EXISTS compared (chunk_id VARCHAR PRIMARY KEY)",
    # a < b; score: differing bits (near) or cosine (semantic)
    "CREATE TABLE IF NOT EXISTS pairs (a VARCHAR, b VARCHAR, link VARCHAR, score DOUBLE)",
]


@dataclass
class DuplicatesRun:
    encoder_key: str | None  # whose vectors were compared (None: none served, near duplicates only)
    compared: int  # chunks new since the last update, compared with every live chunk
    removed: int  # chunks no longer served, their pairs dropped
    exact: int  # files served under several paths
    near_pairs: int
    semantic_pairs: int
    comparisons: int  # cosines computed (all pairs of a first comparison: a million squared at 1M chunks)
    cells: int  # the inverted file's cells (1: every pair compared; store/close_pairs.py)
    groups: int  # near and semantic groups (pair_groups)
    grouped_chunks: int
    seconds: float


def duplicates_fingerprint(settings: Settings, encoder_key: str | None) -> str:
    return short_hash({**asdict(settings.duplicates), "encoder_key": encoder_key, "version": DUPLICATES_VERSION})


def _ids(table: pa.Table, column: str = "chunk_id") -> np.ndarray:
    return table.column(column).to_numpy(zero_copy_only=False)


def _hashes(table: pa.Table) -> np.ndarray:
    return table.column("phash").to_numpy(zero_copy_only=False).astype(np.int64)


def _file_keys(table: pa.Table) -> np.ndarray:
    return table.column("file").to_numpy(zero_copy_only=False).astype(np.uint64)


def candidates(x: np.ndarray, y: np.ndarray, score: np.ndarray) -> pa.Table:
    """Candidate pairs (x, y, score) as a table: one column each, no Python object per pair."""
    return pa.table(
        {"x": pa.array(x, pa.string()), "y": pa.array(y, pa.string()), "score": pa.array(score, pa.float64())},
        CANDIDATES_SCHEMA,
    )


def near_pairs(new: pa.Table, hashed: pa.Table, max_bits: int, most: int) -> pa.Table:
    """(new chunk, chunk of another file, differing bits) for each new chunk's ``most`` closest hashes
    within ``max_bits``, ties to the earliest in ``hashed`` (give it in chunk id order, so that copies
    of one picture all link to the same few)."""
    new_ids, new_hashes, new_files = _ids(new), _hashes(new), _file_keys(new)
    ids, hashes, files = _ids(hashed), _hashes(hashed), _file_keys(hashed)
    x, y, score = [], [], []
    step = max(1, COMPARE_CELLS // max(len(ids), 1))
    for start in range(0, len(new_ids), step):
        bits = hamming(new_hashes[start : start + step, None], hashes[None, :]).astype(np.int64)
        keys = bits * len(ids) + np.arange(len(ids))  # (bits, position) as one key
        keys[(bits > max_bits) | (files[None, :] == new_files[start : start + step, None])] = NOT_A_CANDIDATE
        q, r = closest_in_rows(keys, most)
        x.append(new_ids[start + q])
        y.append(ids[r])
        score.append(bits[q, r])
    if not x:
        return CANDIDATES_SCHEMA.empty_table()
    return candidates(np.concatenate(x), np.concatenate(y), np.concatenate(score))


@dataclass
class VectorPairs:
    """What one scan of the served vectors found for the new chunks."""

    near: pa.Table  # candidates whose hashes are close and whose vectors agree
    semantic: pa.Table
    with_vectors: pa.Array  # the live chunks that have a vector (their near pairs are in ``near``)
    comparisons: int = 0  # cosines computed
    cells: int = 0  # the most cells a modality's scan used (1: every pair compared)


def vector_pairs(
    served: ServedVectors, table, new_ids: np.ndarray, hashed: pa.Table, config: DuplicatesConfig, log
) -> VectorPairs:
    """Semantic pairs of the modalities configured, and near pairs confirmed by vectors, of the new
    chunks against every live chunk: one scan per modality (store/close_pairs.py)."""
    live_ids, live_codes = served.live_vectors(table)
    live = pa.array(live_ids, pa.string())
    is_new = pc.is_in(live, value_set=pa.array(new_ids, pa.string())).to_numpy(zero_copy_only=False)
    found = VectorPairs(CANDIDATES_SCHEMA.empty_table(), CANDIDATES_SCHEMA.empty_table(), live)
    near, semantic = [found.near], [found.semantic]
    for modality, code in MODALITY_CODES.items():
        rules = {}
        if modality in config.semantic_modalities:
            rules["semantic"] = PairRule(config.semantic_cosine, config.links_per_chunk)
        if config.near_min_cosine is not None and hashed.num_rows:
            rules["near"] = PairRule(config.near_min_cosine, config.links_per_chunk, max_bits=config.near_bits)
        of_modality = live_codes == code
        asked = is_new & of_modality
        if not rules or not asked.any() or _files_with(served, modality) < 2:  # one file: no pair can count
            continue
        if compares_every_pair(asked.sum(), of_modality.sum()):  # a few new: only the rows close to them
            lowest = min(rule.min_cosine for rule in rules.values())
            ids, matrix, files = served.rows_near(table, live_ids[asked], lowest, modality)
            found.comparisons += int(asked.sum()) * len(live_ids)  # finding those rows
        else:
            ids, matrix, files = served.live_rows(table, modality)
        chunk_ids = pa.array(ids, pa.string())
        queries = np.flatnonzero(pc.is_in(chunk_ids, value_set=pa.array(new_ids, pa.string())))
        rank = np.empty(len(ids), np.int64)
        rank[pc.sort_indices(chunk_ids).to_numpy()] = np.arange(len(ids))
        in_hashed = pc.index_in(chunk_ids, value_set=hashed.column("chunk_id"))
        has_hash = in_hashed.is_valid().to_numpy(zero_copy_only=False)
        hashes = np.zeros(len(ids), np.int64)
        hashes[has_hash] = _hashes(hashed)[in_hashed.drop_null().to_numpy().astype(np.int64)]
        pairs, report = close_pairs(Rows(matrix, files, rank, hashes, has_hash), queries, list(rules.values()), log)
        found.comparisons += report.products
        found.cells = max(found.cells, report.cells)
        for kind, (q, r, score) in zip(rules, pairs):
            (near if kind == "near" else semantic).append(candidates(ids[q], ids[r], score))
    found.near, found.semantic = pa.concat_tables(near), pa.concat_tables(semantic)
    return found


def _files_with(served: ServedVectors, modality: str) -> int:
    """How many served files have chunks of the modality."""
    sql = "SELECT count(DISTINCT file_id) FROM chunks WHERE modality = ?"
    return served.connection().execute(sql, [modality]).fetchone()[0]


def hash_pairs(new_hashed: pa.Table, hashed: pa.Table, asked: pa.Array | None, config: DuplicatesConfig) -> pa.Table:
    """Near pairs by hashes alone, for the pairs the vector scan cannot ask: an end without a vector
    (not in ``asked``; all of them when near pairs need no vectors: None)."""
    if asked is None:
        return near_pairs(new_hashed, hashed, config.near_bits, config.links_per_chunk)
    new_asked = pc.is_in(new_hashed.column("chunk_id"), value_set=asked)
    without = hashed.filter(pc.invert(pc.is_in(hashed.column("chunk_id"), value_set=asked)))
    return pa.concat_tables(
        [
            near_pairs(new_hashed.filter(pc.invert(new_asked)), hashed, config.near_bits, config.links_per_chunk),
            near_pairs(new_hashed.filter(new_asked), without, config.near_bits, config.links_per_chunk),
        ]
    )


def _between_files(con: duckdb.DuckDBPyConnection, found: pa.Table, link: str) -> pa.Table:
    """The candidates as pairs (a < b) of chunks of different files, each once."""
    con.register("candidates", found)
    try:
        return con.execute(
            """SELECT least(x, y) AS a, greatest(x, y) AS b, $link AS link, max(score) AS score
               FROM candidates JOIN chunks cx ON cx.chunk_id = x JOIN chunks cy ON cy.chunk_id = y
               WHERE cx.file_id != cy.file_id GROUP BY ALL ORDER BY a, b""",
            {"link": link},
        ).to_arrow_table()
    finally:
        con.unregister("candidates")


def update_duplicates(settings: Settings, served: ServedVectors, log=print) -> DuplicatesRun:
    """Compare the chunks served since the last update with every live chunk, drop the pairs of
    chunks gone, and publish the pairs for search."""
    start = time.perf_counter()
    layout, config = settings.layout, settings.duplicates
    con = served.connection()
    try:
        table = choose_encoder_table(served.tables(), settings.duplicates_encoder.name)
    except UnknownEncoder:  # not served (yet): near duplicates only, everything compared again once it is
        table = None
        log(f"duplicates: no vectors of {settings.duplicates_encoder.name} served: near duplicates only")
    encoder = table.encoder_key if table else None
    fingerprint = duplicates_fingerprint(settings, encoder)
    # Every live chunk with a hash or a vector, as Arrow (a million ids: no Python objects per row).
    hashed = con.execute(
        "SELECT chunk_id, phash, hash(file_id) AS file FROM chunks WHERE phash IS NOT NULL ORDER BY chunk_id"
    ).to_arrow_table()
    vector_ids = served.live_vectors(table)[0] if table else []
    live = pa.concat_tables([hashed.select(["chunk_id"]), pa.table({"chunk_id": pa.array(vector_ids, pa.string())})])
    # One writer of derived state at a time (runs started together, the sensor's and the CLI's).
    with single_writer(layout), duckdb.connect(str(layout.duplicates)) as state:
        for ddl in STATE_DDL:
            state.execute(ddl)
        state.execute("BEGIN")
        try:
            if state.execute("SELECT fingerprint FROM compared_with").fetchall() != [(fingerprint,)]:
                log("duplicates: settings or encoder changed since the last comparison: comparing everything")
                for name in ("compared_with", "compared", "pairs"):
                    state.execute(f"DELETE FROM {name}")
                state.execute("INSERT INTO compared_with VALUES (?)", [fingerprint])
            state.register("live_rows", live)
            state.execute("CREATE OR REPLACE TEMP TABLE live AS SELECT DISTINCT chunk_id FROM live_rows")
            unseen = state.execute("SELECT chunk_id FROM live ANTI JOIN compared USING (chunk_id)").to_arrow_table()
            new = _ids(unseen)
            removed = state.execute("SELECT count(*) FROM compared ANTI JOIN live USING (chunk_id)").fetchone()[0]
            state.execute("DELETE FROM compared WHERE chunk_id NOT IN (SELECT chunk_id FROM live)")
            state.execute(
                "DELETE FROM pairs WHERE a NOT IN (SELECT chunk_id FROM live) OR b NOT IN (SELECT chunk_id FROM live)"
            )
            state.register("hashed", hashed)
            new_hashed = state.execute("SELECT * FROM hashed ANTI JOIN compared USING (chunk_id)").to_arrow_table()
            scanned = VectorPairs(*[CANDIDATES_SCHEMA.empty_table()] * 2, pa.array([], pa.string()))
            if table is not None:
                scanned = vector_pairs(served, table, new, hashed, config, log)
            asked = scanned.with_vectors if config.near_min_cosine is not None and table is not None else None
            near = pa.concat_tables([scanned.near, hash_pairs(new_hashed, hashed, asked, config)])
            semantic = scanned.semantic
            for found in (_between_files(con, near, "near"), _between_files(con, semantic, "semantic")):
                state.register("found", found)
                state.execute("INSERT INTO pairs SELECT a, b, link, score FROM found")
                state.unregister("found")
            state.execute("INSERT INTO compared SELECT chunk_id FROM live ANTI JOIN compared USING (chunk_id)")
            pairs = state.execute("SELECT a, b, link, score FROM pairs ORDER BY a, b, link").to_arrow_table()
            state.execute("COMMIT")
        except Exception:
            state.execute("ROLLBACK")
            raise
    with replaced_atomically(layout.duplicate_pairs) as tmp:
        pq.write_table(pairs.cast(PAIRS_SCHEMA), tmp)
    groups = pair_groups(pairs)
    links = pairs.column("link").to_pylist()
    run = DuplicatesRun(
        encoder_key=encoder,
        compared=len(new),
        removed=int(removed),
        exact=len(exact_duplicates(con)),
        near_pairs=links.count("near"),
        semantic_pairs=links.count("semantic"),
        comparisons=scanned.comparisons,
        cells=scanned.cells,
        groups=len(set(groups.values())),
        grouped_chunks=len(groups),
        seconds=time.perf_counter() - start,
    )
    log(
        f"duplicates: {run.compared:,} new chunks compared, {run.removed:,} gone; {run.near_pairs:,} near and "
        f"{run.semantic_pairs:,} semantic pairs in {run.groups:,} groups; {run.exact:,} files under several "
        f"paths; {run.comparisons:,} cosines in {max(run.cells, 1):,} cell(s) ({run.seconds:.1f} s)"
    )
    return run


def read_pairs(path: Path) -> pa.Table:
    """The published pairs (empty before the first update)."""
    return pq.read_table(path) if path.exists() else PAIRS_SCHEMA.empty_table()


def pair_groups(pairs: pa.Table) -> dict[str, str]:
    """Chunk id -> its group, for every chunk grouped with another. Star-shaped, not connected
    components: near-duplicate links chain (A looks like B, B like C, C nothing like A), so each group
    is a leader and the chunks linked to it directly. Leaders are taken most-linked first (ties by id):
    the original among its copies."""
    neighbours: dict[str, set[str]] = defaultdict(set)
    for a, b in zip(pairs.column("a").to_pylist(), pairs.column("b").to_pylist()):
        neighbours[a].add(b)
        neighbours[b].add(a)
    group: dict[str, str] = {}
    for leader in sorted(neighbours, key=lambda c: (-len(neighbours[c]), c)):
        if leader in group:
            continue
        members = [c for c in neighbours[leader] if c not in group]
        if members:
            group.update({c: leader for c in (leader, *members)})
    return group


def exact_duplicates(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """File id -> its paths, for every file served under more than one path."""
    rows = con.execute("""
        SELECT file_id, list(path ORDER BY path) FROM paths WHERE status = 'ok' AND file_id IS NOT NULL
        GROUP BY file_id HAVING count(*) > 1 ORDER BY file_id""").fetchall()
    return dict(rows)


def chunk_paths(con: duckdb.DuckDBPyConnection, chunk_ids) -> dict[str, list[str]]:
    """Chunk id -> every path its file is served under."""
    rows = con.execute(
        """SELECT c.chunk_id, list(p.path ORDER BY p.path) FROM chunks c JOIN paths p USING (file_id)
           WHERE p.status = 'ok' AND c.chunk_id IN (SELECT unnest($ids)) GROUP BY c.chunk_id""",
        {"ids": sorted(chunk_ids)},
    ).fetchall()
    return dict(rows)


def list_duplicates(con: duckdb.DuckDBPyConnection, pairs_path: Path, link: str | None = None) -> list[dict]:
    """Every duplicate group, largest first: its links and its members (path, modality, role, time
    span, other paths of the same content). Exact groups are one file's paths; ``link`` keeps the
    groups with a pair of that kind (or, for "exact", the files under several paths)."""
    if link is not None and link not in LINKS:
        raise ValueError(f"link must be one of {LINKS}, not {link!r}")
    exact = exact_duplicates(con)
    pairs = read_pairs(pairs_path)
    groups = pair_groups(pairs)
    links_of: dict[str, set] = defaultdict(set)
    for a, b, kind in zip(*(pairs.column(c).to_pylist() for c in ("a", "b", "link"))):
        if groups.get(a) is not None and groups.get(a) == groups.get(b):
            links_of[groups[a]].add(kind)
    members: dict[str, list[str]] = defaultdict(list)
    for chunk_id, group in sorted(groups.items()):
        members[group].append(chunk_id)
    details = chunk_details(con, sorted(groups))
    out = []
    for group, chunk_ids in members.items():
        found = [
            {
                "chunk_id": c,
                "also_at": [p for p in exact.get(details[c]["file_id"], []) if p != details[c]["path"]],
                **{k: details[c][k] for k in ("path", "file_id", "modality", "role", "t_start", "text")},
            }
            for c in chunk_ids
            if c in details  # gone since the last update: the next one drops it
        ]
        kinds = sorted(links_of[group] | ({"exact"} if any(m["also_at"] for m in found) else set()))
        if len(found) > 1 and (link is None or link in kinds):
            out.append({"group": group, "links": kinds, "members": found})
    in_groups = {m["file_id"] for g in out for m in g["members"]}
    if link in (None, "exact"):
        out += [
            {"group": file_id, "links": ["exact"], "members": [{"file_id": file_id, "path": p} for p in paths]}
            for file_id, paths in exact.items()
            if file_id not in in_groups
        ]
    return sorted(out, key=lambda g: (-len(g["members"]), g["group"]))
