"""Scores comparable across modalities, for a search over all of them.

CLIP's modality gap puts a text query's cosine to any text above its cosine to any image, so a list
of every modality ranked by cosine is all text. retrieval_eval fits, per (query modality, target
modality), the log-odds that a target is relevant given its cosine (evaluation/calibration.py) and
writes them here, one file per encoder key; a search then ranks each modality's nearest by that
score, which means the same whatever the modality. Within one modality the order stays the cosine's.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mm_assets.store.catalog import EncoderTable
from mm_assets.store.layout import write_text_atomically


@dataclass(frozen=True)
class Calibration:
    """One (query modality, target modality) pair: log-odds of relevance = slope * cosine + intercept."""

    slope: float
    intercept: float
    n: int  # (query, target) pairs it was fitted on

    def calibrate(self, similarity: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(similarity, dtype=np.float64) + self.intercept


def write_calibrations(folder: Path, fitted: dict[str, dict[tuple[str, str], Calibration]], run_id: str) -> None:
    """Each encoder key's calibrations as ``<folder>/<encoder key>.json``, replaced whole (search
    reads them while an evaluation writes)."""
    fitted_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for key, pairs in fitted.items():
        rows = [{"query": q, "target": t, **asdict(c)} for (q, t), c in sorted(pairs.items())]
        payload = {"encoder_key": key, "run_id": run_id, "fitted_at": fitted_at, "pairs": rows}
        write_text_atomically(folder / f"{key}.json", json.dumps(payload, indent=1))


def read_calibrations(folder: Path, encoder_key: str) -> dict[tuple[str, str], Calibration]:
    """The encoder key's latest calibrations (empty: never fitted, or the file is unreadable)."""
    try:
        rows = json.loads((folder / f"{encoder_key}.json").read_text())["pairs"]
        return {(r["query"], r["target"]): Calibration(r["slope"], r["intercept"], r["n"]) for r in rows}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


class Calibrations:
    """The calibrations in a folder, each encoder key's reread when its file changes."""

    def __init__(self, folder: Path | None):
        self.folder = folder  # None: never calibrate
        self._read: dict[str, tuple[int, dict]] = {}  # encoder key -> (its file's stamp, its calibrations)

    def for_query(self, table: EncoderTable, query_modality: str | None) -> dict[str, Calibration] | None:
        """Target modality -> calibration of its cosines to a query of this modality, when the
        encoder key's latest fit covers every modality of the table (else None: rank by cosine)."""
        if self.folder is None or query_modality is None:
            return None
        try:
            stamp = (self.folder / f"{table.encoder_key}.json").stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if self._read.get(table.encoder_key, (None,))[0] != stamp:
            self._read[table.encoder_key] = (stamp, read_calibrations(self.folder, table.encoder_key))
        fitted = self._read[table.encoder_key][1]
        targets = table.metadata["modalities"]
        if not all((query_modality, t) in fitted for t in targets):
            return None
        return {t: fitted[(query_modality, t)] for t in targets}


def merged_by_score(per_modality: dict[str, list[tuple[str, float]]], calibrations: dict[str, Calibration], depth: int):
    """(chunk id, cosine distance, calibrated score) of the ``depth`` best over every modality's
    nearest ((chunk id, distance) lists by target modality), ties by chunk id."""
    ranked = [
        (chunk_id, distance, float(calibrations[target].calibrate(1.0 - distance)))
        for target, nearest in per_modality.items()
        for chunk_id, distance in nearest
    ]
    return sorted(ranked, key=lambda r: (-r[2], r[0]))[:depth]
