"""A CLIP encoder run from its cached ONNX export alone: no torch, no transformers.

The first load of a model in an ONNX Runtime precision goes through PyTorch (encoders/clip.py): it
exports both towers, checks them against float32 and completes the export with a summary and the
tokenizer (encoders/runtime.py). Every later load on a CPU reads that folder: ONNX Runtime sessions,
the `tokenizers` file and the summary's preprocessing and metadata. Importing torch and
transformers' CLIP and loading the weights twice for the check took 7 s of a 400-image run on 2 cores;
this takes under a second, and a cold `mm-assets search` pays it for every query.
"""

from __future__ import annotations

import platform
from collections.abc import Collection
from pathlib import Path

import numpy as np
from PIL import Image

import mm_assets
from mm_assets.config import EncoderConfig
from mm_assets.encoders.image_preprocessing import ImagePreprocessing
from mm_assets.encoders.precision import precision_check_passes, resolve_precision, surely_cpu
from mm_assets.encoders.resolve import ResolvedModel
from mm_assets.encoders.runtime import (
    ONNX_PRECISIONS,
    TOKENIZER,
    TOWERS,
    OnnxTower,
    export_dir,
    normalise_rows,
    onnxruntime_usable,
    read_export_summary,
)


class ExportedClipEncoder:
    """Embeds as ClipEncoder does on ONNX Runtime (the same sessions, hence the same vectors), loaded
    from a complete export."""

    modalities = frozenset({"image", "text"})
    device = "cpu"
    runtime = "onnxruntime"

    def __init__(
        self, config: EncoderConfig, resolved: ResolvedModel, folder: Path, summary: dict, first: tuple[str, ...]
    ):
        from tokenizers import Tokenizer

        self.config, self.resolved = config, resolved
        self.precision = summary["precision"]
        self.check_cosine = summary["calibration_cosine"]
        self.max_tokens = int(summary["max_tokens"])
        self.preprocess = ImagePreprocessing.from_dict(summary["preprocessing"])
        self._recorded = summary["metadata"]
        self.dim = int(self._recorded["embedding_dim"])
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER))
        self._folder, self._one_row = folder, self.precision == "int8"
        # The towers asked for first open now (a damaged file then fails the load, and PyTorch exports
        # it again); the other when first used: an image-only step never pays for the text session.
        self._onnx: dict[str, OnnxTower] = {}
        for tower in first:
            self._tower(tower)

    def _tower(self, tower: str) -> OnnxTower:
        if tower not in self._onnx:
            self._onnx[tower] = OnnxTower(self._folder / f"{tower}.onnx", self._one_row)
        return self._onnx[tower]

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return normalise_rows(self._tower("image")(pixel_values=np.ascontiguousarray(pixels, np.float32)))

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.embed_pixels(np.stack([self.preprocess(im) for im in images]))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        return normalise_rows(self._tower("text")(input_ids=ids, attention_mask=mask))

    def metadata(self) -> dict:
        """What Encoder.metadata() gave when the export was checked, with what is this process's own:
        where the model is now, what the configuration asks for, the Python running it."""
        return {
            **self._recorded,
            "model_id": self.resolved.model_id,
            "model_dir": str(self.resolved.local_dir),
            "dtype_requested": self.config.dtype,
            "runtime_requested": self.config.runtime,
            "modalities": list(self.config.modalities),
            "lineage": self.resolved.lineage(),
            "versions": {
                **self._recorded["versions"],
                "mm_assets": mm_assets.__version__,
                "python": platform.python_version(),
            },
        }


def load_exported_clip(
    config: EncoderConfig, resolved: ResolvedModel, modalities: Collection[str] | None = None
) -> ExportedClipEncoder | None:
    """The encoder from a complete export, when the configuration would run it on ONNX Runtime on
    this CPU and the export's check would keep it; else None (load through PyTorch). ``modalities``:
    what the caller embeds first, whose towers open now (default: both)."""
    if not surely_cpu(config.device) or not onnxruntime_usable(config.runtime, "cpu", exportable=True):
        return None
    precision = resolve_precision(config.dtype, "cpu", int8_runtime=True)
    if precision not in ONNX_PRECISIONS:
        return None
    folder = export_dir(resolved, precision)
    summary = read_export_summary(folder)
    if summary is None or not precision_check_passes(config, precision, summary["calibration_cosine"]):
        return None
    try:
        first = tuple(t for t in TOWERS if modalities is None or t in modalities)
        return ExportedClipEncoder(config, resolved, folder, summary, first)
    except Exception:  # a damaged file: the PyTorch path exports it again
        return None
