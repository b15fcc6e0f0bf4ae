"""The training split of captioned images, decoded and preprocessed for a model."""

from __future__ import annotations

import pyarrow as pa

from mm_assets.encoders.image_preprocessing import ImagePreprocessing
from mm_assets.evaluation.retrieval import in_test_split
from mm_assets.formats import BadFile
from mm_assets.formats.images import decode_rgb
from mm_assets.formats.reading import read_ingested_file
from mm_assets.training.contrastive import TrainingPair


def training_pairs(
    raw_files: pa.Table | None, test_percent: int, preprocess: ImagePreprocessing, max_pixels: int
) -> tuple[list[TrainingPair], list[str]]:
    """Captioned images outside the test split (one per content hash), and the paths skipped."""
    if raw_files is None:
        return [], []
    latest: dict[str, dict] = {}
    for row in raw_files.to_pylist():
        if row["status"] == "ok" and row["kind"] == "image" and row.get("caption"):
            if not in_test_split(row["file_id"], test_percent):
                if row["file_id"] not in latest or row["ingested_at"] > latest[row["file_id"]]["ingested_at"]:
                    latest[row["file_id"]] = row
    pairs, skipped = [], []
    for file_id, row in sorted(latest.items()):
        try:
            data = read_ingested_file(row["path"], file_id)
            image = decode_rgb(data, max_pixels, min_side=preprocess.shortest_edge)
        except BadFile:
            skipped.append(row["path"])
            continue
        pairs.append(TrainingPair(file_id, preprocess(image), row["caption"], row.get("label")))
    return pairs, skipped
