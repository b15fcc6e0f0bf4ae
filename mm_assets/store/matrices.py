"""The serving matrices: one segment's vectors of one encoder table as .npy files beside its rows,
memory-mapped by the scans (a matrix product is far faster than a per-row scan). Written, checked
and read here alone.

    <segment dir>/<table>.npy            float32 vectors, in the segment table's row order
    <segment dir>/<table>.ids.npy        the chunk id of each row
    <segment dir>/<table>.modality.npy   the modality code of each row (store/tables.MODALITY_CODES)
    <segment dir>/<table>.order.npy      the rows in chunk-id order (to find a chunk's row)
    <segment dir>/<table>.int8.npy, .int8scale.npy, .bits.npy   quantized copies (store/quantized.py)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mm_assets.store.duck import VectorDBError, damaged
from mm_assets.store.layout import segment_dir
from mm_assets.store.quantized import Int8Scan, SignBitScan, int8_codes, sign_bits

# Every segment has these; the quantized copies are missing in segments written before they existed.
REQUIRED = {"matrix": ".npy", "ids": ".ids.npy", "modality": ".modality.npy", "order": ".order.npy"}
QUANTIZED = {"int8": ".int8.npy", "int8scale": ".int8scale.npy", "bits": ".bits.npy"}


def _file(folder: Path, table: str, part: str) -> Path:
    return folder / f"{table}{REQUIRED.get(part) or QUANTIZED[part]}"


def matrix_path(root: Path, segment: str, table: str) -> Path:
    """The float32 matrix of one segment's table."""
    return _file(segment_dir(root, segment), table, "matrix")


def write_matrices(folder: Path, table: str, matrix: np.ndarray, ids: np.ndarray, modality: np.ndarray) -> None:
    """Every file of one table's matrices into ``folder`` (the segment's, before it is published)."""
    np.save(_file(folder, table, "matrix"), matrix)
    codes, scales = int8_codes(matrix)
    np.save(_file(folder, table, "int8"), codes)
    np.save(_file(folder, table, "int8scale"), scales)
    np.save(_file(folder, table, "bits"), sign_bits(matrix))
    np.save(_file(folder, table, "ids"), ids)
    np.save(_file(folder, table, "order"), np.argsort(ids, kind="stable"))
    np.save(_file(folder, table, "modality"), modality)


def check_matrices(root: Path, segment: str, table: str, rows: int) -> None:
    """VectorDBError unless every required file holds ``rows`` rows (reads headers, not data)."""
    for part in REQUIRED:
        path = _file(segment_dir(root, segment), table, part)
        if len(np.load(path, mmap_mode="r")) != rows:
            raise VectorDBError(f"{path} does not hold {rows} rows")


@dataclass(frozen=True)
class SegmentMatrices:
    """One segment's part of an encoder table, memory-mapped."""

    matrix: np.ndarray
    codes: np.ndarray  # modality per row
    ids: np.ndarray  # chunk id per row
    order: np.ndarray  # the rows in chunk-id order
    # The scans of its quantized copies by kind ("int8", "binary"); none in segments written before
    # they existed, which are then searched exactly.
    quantized: dict[str, SignBitScan | Int8Scan] = field(default_factory=dict)


def read_matrices(root: Path, segment: str, table: str, rows: int) -> SegmentMatrices:
    folder = segment_dir(root, segment)
    path = matrix_path(root, segment, table)
    try:
        found = SegmentMatrices(
            np.load(path, mmap_mode="c"),  # copy-on-write: never written, torch wants writable
            np.load(_file(folder, table, "modality")),
            np.load(_file(folder, table, "ids")),
            np.load(_file(folder, table, "order")),
            _quantized(folder, table),
        )
    except (OSError, ValueError) as exc:
        raise damaged(f"the serving matrix {path}", exc) from None
    if not len(found.matrix) == len(found.codes) == len(found.ids) == len(found.order) == rows:
        raise damaged(f"the serving matrix {path}", f"{len(found.matrix)} rows, expected {rows}")
    return found


def _quantized(folder: Path, table: str) -> dict[str, SignBitScan | Int8Scan]:
    """Scans of the quantized copies that exist, memory-mapped."""
    found = {}
    if _file(folder, table, "int8").exists():
        codes = np.load(_file(folder, table, "int8"), mmap_mode="r")
        found["int8"] = Int8Scan(codes, np.load(_file(folder, table, "int8scale")))
    if _file(folder, table, "bits").exists():
        found["binary"] = SignBitScan(np.load(_file(folder, table, "bits"), mmap_mode="r"))
    return found
