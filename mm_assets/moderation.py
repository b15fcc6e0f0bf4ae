"""Moderation against natural-language policies, from the vectors already served (no re-embedding).

A policy is a few phrasings of what it forbids. Its phrasings are embedded by the text tower of the
encoder whose vectors it scores; a chunk's score is its best cosine to any phrasing, and the chunk is
flagged at or above the policy's threshold. The threshold is given, or chosen on labelled
examples: the captioned images whose label the policy names are the violations, every other labelled
image is not, and the threshold is the lowest whose flags among them reach the target precision (the
most recall at that precision). Precision and recall on the examples are reported either way.

The flags live in their own DuckDB file (``flags.duckdb``, rewritten per policy, never read while
half-written: one transaction per policy). A policy is re-scored when it changes (its fingerprint:
phrasings, threshold, labels, encoder) or when the vectors do (a new generation); the others keep
their rows.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import numpy as np

from mm_assets.config import Settings
from mm_assets.config_sections import PolicyConfig
from mm_assets.encoders.fusion import query_in_table
from mm_assets.hashing import short_hash
from mm_assets.store.catalog import EncoderTable, choose_encoder_table, chunk_details
from mm_assets.store.served import ServedVectors

# Bumped when scoring changes what it produces (part of every policy's fingerprint).
MODERATION_VERSION = "1"
FLAGS_DDL = [
    """CREATE TABLE IF NOT EXISTS policy_flags (
        policy VARCHAR, fingerprint VARCHAR, chunk_id VARCHAR, score DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS policy_runs (
        policy VARCHAR, fingerprint VARCHAR, generation BIGINT, encoder_key VARCHAR, threshold DOUBLE,
        target_precision DOUBLE, "precision" DOUBLE, recall DOUBLE, n_labelled INTEGER, n_scored BIGINT,
        n_flagged BIGINT, scored_at TIMESTAMP, note VARCHAR)""",
]


@dataclass
class PolicyRun:
    """One scoring of one policy: its threshold, how it does on the labelled examples, its flags."""

    policy: str
    fingerprint: str
    generation: int
    encoder_key: str
    threshold: float | None  # None: a target precision no threshold reaches (nothing flagged)
    target_precision: float | None
    precision: float | None  # on the labelled examples, at the threshold (None without examples)
    recall: float | None
    n_labelled: int
    n_scored: int
    n_flagged: int
    note: str | None = None


def policy_fingerprint(policy: PolicyConfig, encoder_key: str) -> str:
    return short_hash({**asdict(policy), "encoder_key": encoder_key, "version": MODERATION_VERSION})


def threshold_for_precision(
    scores: np.ndarray, violates: np.ndarray, target_precision: float
) -> tuple[float, float, float] | None:
    """(threshold, precision, recall) of the lowest threshold whose flags (score >= threshold) among
    the labelled examples reach ``target_precision``; None when none does."""
    order = np.argsort(-scores, kind="stable")
    ranked, hit = scores[order], violates[order].astype(bool)
    if not hit.any():
        return None
    true_positives = np.cumsum(hit)
    precision = true_positives / np.arange(1, len(ranked) + 1)
    # A threshold flags every example scoring at least as much: cut only after the last of equal scores.
    cut = np.r_[ranked[1:] != ranked[:-1], True]
    ok = np.flatnonzero(cut & hit & (precision >= target_precision))
    if not ok.size:
        return None
    i = ok[-1]
    return float(ranked[i]), float(precision[i]), float(true_positives[i] / hit.sum())


def precision_recall(scores: np.ndarray, violates: np.ndarray, threshold: float) -> tuple[float | None, float | None]:
    flagged, violates = scores >= threshold, violates.astype(bool)
    precision = float(violates[flagged].mean()) if flagged.any() else None
    recall = float(flagged[violates].mean()) if violates.any() else None
    return precision, recall


def labelled_examples(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Chunk id -> label of each labelled image (its whole-image chunk)."""
    rows = con.execute("""
        SELECT c.chunk_id, f.label FROM files f JOIN chunks c USING (file_id)
        WHERE f.label IS NOT NULL AND c.modality = 'image' AND c.position = 0""").fetchall()
    return dict(rows)


def score_policy(
    served: ServedVectors, policy: PolicyConfig, table: EncoderTable, labels: dict[str, str], phrase_vectors: np.ndarray
):
    """(the policy's run, its flags as (chunk id, score)) over every live chunk of the table;
    ``labels``: the labelled examples (labelled_examples)."""
    ids, scores = served.best_similarity(table, phrase_vectors)
    at = {chunk_id: i for i, chunk_id in enumerate(ids)}
    examples = [c for c in labels if c in at]
    example_scores = scores[[at[c] for c in examples]] if examples else np.zeros(0)
    violates = np.asarray([labels[c] in policy.labels for c in examples], dtype=bool)
    threshold, note = policy.threshold, None
    if policy.target_precision is not None:
        chosen = threshold_for_precision(example_scores, violates, policy.target_precision)
        if chosen is None:
            threshold = None
            note = (
                f"no threshold reaches precision {policy.target_precision} on {len(examples)} labelled examples "
                f"({int(violates.sum())} with labels {list(policy.labels)}): nothing flagged"
            )
        else:
            threshold = chosen[0]
    precision = recall = None
    if threshold is not None and policy.labels and len(examples):
        precision, recall = precision_recall(example_scores, violates, threshold)
    flagged = np.flatnonzero(scores >= threshold) if threshold is not None else np.zeros(0, dtype=np.int64)
    run = PolicyRun(
        policy=policy.name,
        fingerprint=policy_fingerprint(policy, table.encoder_key),
        generation=served.generation().number,
        encoder_key=table.encoder_key,
        threshold=threshold,
        target_precision=policy.target_precision,
        precision=precision,
        recall=recall,
        n_labelled=len(examples),
        n_scored=len(ids),
        n_flagged=len(flagged),
        note=note,
    )
    return run, [(str(ids[i]), float(scores[i])) for i in flagged]


def update_policy_flags(settings: Settings, served: ServedVectors, log=print) -> dict[str, PolicyRun]:
    """Score the policies that changed (or every one, when the vectors did) and drop removed ones;
    phrasings are embedded by the model that wrote the vectors. Returns the run of every configured
    policy, fresh or kept."""
    from mm_assets.encoders.load import recorded_encoder  # the model: only when a policy is scored

    path = settings.layout.flags
    path.parent.mkdir(parents=True, exist_ok=True)
    generation = served.generation().number
    tables = served.tables()
    labels: dict[str, str] | None = None  # read once, when the first policy is scored
    runs = {}
    with duckdb.connect(str(path)) as con:
        for ddl in FLAGS_DDL:
            con.execute(ddl)
        kept = _latest_runs(con)
        configured = {p.name for p in settings.policies}
        for gone in set(kept) - configured:
            _replace(con, gone, None, [])
            log(f"policy {gone}: no longer configured, its flags removed")
        for policy in settings.policies:
            table = choose_encoder_table(tables, settings.policy_encoder(policy).name)
            previous = kept.get(policy.name)
            if (
                previous
                and previous.fingerprint == policy_fingerprint(policy, table.encoder_key)
                and previous.generation == generation
            ):
                runs[policy.name] = previous
                continue
            start = time.perf_counter()
            labels = labelled_examples(served.connection()) if labels is None else labels
            phrases = recorded_encoder(table).embed_texts(list(policy.phrasings))
            phrase_vectors = query_in_table(phrases, table.metadata.get("fusion"))
            run, flags = score_policy(served, policy, table, labels, phrase_vectors)
            _replace(con, policy.name, run, flags)
            runs[policy.name] = run
            log(
                f"policy {policy.name}: {run.n_flagged:,} of {run.n_scored:,} chunks flagged"
                + (f" at {run.threshold:.4f}" if run.threshold is not None else "")
                + f" ({time.perf_counter() - start:.1f} s)"
                + (f"; {run.note}" if run.note else "")
            )
    return runs


def _replace(con: duckdb.DuckDBPyConnection, policy: str, run: PolicyRun | None, flags: list[tuple[str, float]]):
    """A policy's rows, replaced in one transaction (readers see the old or the new, never a mix)."""
    con.execute("BEGIN")
    try:
        con.execute("DELETE FROM policy_flags WHERE policy = ?", [policy])
        con.execute("DELETE FROM policy_runs WHERE policy = ?", [policy])
        if run is not None:
            if flags:
                con.executemany(
                    "INSERT INTO policy_flags VALUES (?, ?, ?, ?)", [(policy, run.fingerprint, c, s) for c, s in flags]
                )
            values = [getattr(run, f) for f in PolicyRun.__dataclass_fields__]
            con.execute(
                "INSERT INTO policy_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp, ?)", values
            )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def _latest_runs(con: duckdb.DuckDBPyConnection) -> dict[str, PolicyRun]:
    cursor = con.execute("SELECT * EXCLUDE (scored_at) FROM policy_runs")
    names = [d[0] for d in cursor.description]
    return {row[0]: PolicyRun(**dict(zip(names, row))) for row in cursor.fetchall()}


def read_flags(
    path: Path, vectors: duckdb.DuckDBPyConnection, policy: str | None = None, limit: int = 20
) -> list[dict]:
    """Per policy: its run and its highest-scoring flags with the chunk's path, modality and text."""
    if not path.exists():
        return []
    with duckdb.connect(str(path), read_only=True) as con:
        runs = _latest_runs(con)
        out = []
        for name in sorted(runs):
            if policy is not None and name != policy:
                continue
            rows = con.execute(
                "SELECT chunk_id, score FROM policy_flags WHERE policy = ? ORDER BY score DESC, chunk_id LIMIT ?",
                [name, limit],
            ).fetchall()
            details = chunk_details(vectors, [c for c, _ in rows])
            flags = [
                {"chunk_id": c, "score": s, **{k: details[c][k] for k in ("path", "modality", "text")}}
                for c, s in rows
                if c in details  # deleted since it was scored: the next run drops it
            ]
            out.append({**asdict(runs[name]), "flags": flags})
    return out
