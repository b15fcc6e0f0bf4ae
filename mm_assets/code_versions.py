"""The code version each asset and partition was last materialized under, as a ledger kept beside
the Dagster instance, so that "what is out of date" costs what changed, not how long the project
has lived.

The ledger is a SQLite file in the instance's folder: one row per (asset, partition) with the code
version and storage id of its latest materialization, and per asset the event-log cursor it has read
up to. Each ``refresh`` reads only the materializations recorded since (one query per asset when
nothing happened), and the stale partitions are an indexed look-up. It is derived: deleting the file
only makes the next refresh read the whole event log once. Processes sharing an instance (the
sensor daemon, `mm-assets run`, the UI's checks) may refresh at once: every write is idempotent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

import dagster as dg

CODE_VERSION_TAG = "dagster/code_version"
LEDGER_FILE = "mm_assets_code_versions.sqlite"
UNPARTITIONED = ""  # the partition of an asset without partitions (batch ids are never empty)
# Materializations read per event-log query while catching up.
PAGE = 1000
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS latest (
        asset TEXT NOT NULL, partition TEXT NOT NULL, code_version TEXT, storage_id INTEGER NOT NULL,
        PRIMARY KEY (asset, partition))""",
    "CREATE INDEX IF NOT EXISTS latest_by_version ON latest (asset, code_version)",
    "CREATE TABLE IF NOT EXISTS cursors (asset TEXT PRIMARY KEY, storage_id INTEGER NOT NULL)",
)


class CodeVersionLedger:
    """The ledger of one Dagster instance."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance
        self.path = Path(instance.root_directory) / LEDGER_FILE

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        con.execute("PRAGMA journal_mode = WAL")  # readers never wait for a writer
        for ddl in SCHEMA:
            con.execute(ddl)
        return con

    def refresh(self, keys: Iterable[dg.AssetKey]) -> None:
        """Read the materializations of these assets recorded since the last refresh."""
        with closing(self._connect()) as con:
            for key in keys:
                self._catch_up(con, key)

    def _catch_up(self, con: sqlite3.Connection, key: dg.AssetKey) -> None:
        asset = key.to_user_string()
        row = con.execute("SELECT storage_id FROM cursors WHERE asset = ?", [asset]).fetchone()
        after = row[0] if row else None
        while True:
            page = self.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=PAGE, ascending=True
            )
            if after is not None and not page.records and self._wiped_since(key, after):
                # The event log lost materializations the ledger holds (wiped in the UI): read it again.
                con.execute("DELETE FROM latest WHERE asset = ?", [asset])
                con.execute("DELETE FROM cursors WHERE asset = ?", [asset])
                after = None
                continue
            if page.records:
                rows = [
                    (
                        asset,
                        r.partition_key or UNPARTITIONED,
                        r.asset_materialization.tags.get(CODE_VERSION_TAG),
                        r.storage_id,
                    )
                    for r in page.records
                ]
                after = rows[-1][3]
                con.execute("BEGIN IMMEDIATE")
                con.executemany(
                    """INSERT INTO latest VALUES (?, ?, ?, ?) ON CONFLICT (asset, partition) DO UPDATE
                       SET code_version = excluded.code_version, storage_id = excluded.storage_id
                       WHERE excluded.storage_id > latest.storage_id""",
                    rows,
                )
                con.execute(
                    """INSERT INTO cursors VALUES (?, ?) ON CONFLICT (asset) DO UPDATE
                       SET storage_id = max(storage_id, excluded.storage_id)""",
                    [asset, after],
                )
                con.execute("COMMIT")
            if not page.has_more:
                return

    def _wiped_since(self, key: dg.AssetKey, cursor: int) -> bool:
        """Whether the event log's latest materialization of the asset is older than what was read."""
        latest = self.instance.fetch_materializations(key, limit=1)
        return not latest.records or latest.records[0].storage_id < cursor

    def materialized(self, key: dg.AssetKey) -> set[str]:
        """The partitions of the asset materialized at least once (one indexed scan in SQLite, no
        event-log query). Call ``refresh`` first."""
        with closing(self._connect()) as con:
            rows = con.execute("SELECT partition FROM latest WHERE asset = ?", [key.to_user_string()])
            return {p for (p,) in rows.fetchall()}

    def stale(self, key: dg.AssetKey, current: str | None) -> dict[str | None, str]:
        """Partition (None: the asset itself) -> the code version it recorded, for each partition whose
        latest materialization recorded another code version than ``current``. Partitions never
        materialized, or materialized without a code version, are missing, not stale. Call
        ``refresh`` first."""
        asset = key.to_user_string()
        with closing(self._connect()) as con:
            if current is None:
                rows = con.execute(
                    "SELECT partition, code_version FROM latest WHERE asset = ? AND code_version IS NOT NULL", [asset]
                )
            else:  # two ranges of the index: O(stale partitions), however many are current
                rows = con.execute(
                    """SELECT partition, code_version FROM latest
                       WHERE asset = ? AND (code_version < ? OR code_version > ?)""",
                    [asset, current, current],
                )
            return {(p if p != UNPARTITIONED else None): v for p, v in rows.fetchall()}
