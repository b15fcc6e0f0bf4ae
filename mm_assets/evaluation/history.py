"""Evaluation results over time, in their own DuckDB file (the vector database is rebuilt often;
this history is not derived from anything and must survive those rebuilds)."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb

from mm_assets.store.tables import (
    RETRIEVAL_EVAL_ADDED,
    RETRIEVAL_EVAL_DDL,
    RETRIEVAL_METRICS,
)


def record_results(db_path: Path, results: list[dict], encoders: dict[str, dict], run_id: str) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(db_path)) as con:
        con.execute(RETRIEVAL_EVAL_DDL)
        for column, kind in RETRIEVAL_EVAL_ADDED.items():
            con.execute(f'ALTER TABLE retrieval_eval ADD COLUMN IF NOT EXISTS "{column}" {kind}')
        now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        metrics = [*RETRIEVAL_METRICS, *RETRIEVAL_EVAL_ADDED]
        columns = ["evaluated_at", "run_id", "encoder", "encoder_key", "fingerprint", "model_id", "revision", "task"]
        names = ", ".join(f'"{c}"' for c in [*columns, *metrics])
        for r in results:
            meta = encoders[r["encoder_key"]]
            con.execute(
                f"INSERT INTO retrieval_eval ({names}) VALUES ({', '.join('?' * (len(columns) + len(metrics)))})",
                [
                    now,
                    run_id,
                    r["encoder"],
                    r["encoder_key"],
                    meta["fingerprint"],
                    meta["model_id"],
                    meta["revision"],
                    r["task"],
                    *[r.get(c) for c in metrics],
                ],
            )


def latest_results(db_path: Path) -> list[dict]:
    """The rows of the most recent evaluation run."""
    if not db_path.exists():
        return []
    with duckdb.connect(str(db_path), read_only=True) as con:
        cursor = con.execute("""
            SELECT * EXCLUDE (evaluated_at), strftime(evaluated_at, '%Y-%m-%dT%H:%M:%SZ') AS evaluated_at
            FROM retrieval_eval
            WHERE run_id = (SELECT arg_max(run_id, evaluated_at) FROM retrieval_eval)
            ORDER BY task, encoder""")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
