"""CLIP's image preprocessing done directly on PIL images, as the model's processor config declares it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ImagePreprocessing:
    """What CLIPImageProcessor does (resize, center crop, normalise), without transformers at run time."""

    shortest_edge: int
    crop_height: int
    crop_width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> ImagePreprocessing:
        """The preprocessing a saved model declares (its processor config, read by transformers)."""
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(model_dir)
        size, crop = processor.size, processor.crop_size
        edge = size.get("shortest_edge") if hasattr(size, "get") else size.shortest_edge
        return cls(
            shortest_edge=int(edge or min(crop.height, crop.width)),
            crop_height=int(crop.height),
            crop_width=int(crop.width),
            mean=tuple(float(m) for m in processor.image_mean),
            std=tuple(float(s) for s in processor.image_std),
            resample=int(processor.resample),
        )

    @classmethod
    def from_dict(cls, values: dict) -> ImagePreprocessing:
        """From ``as_dict()``'s output (an export summary)."""
        return cls(**{**values, "mean": tuple(values["mean"]), "std": tuple(values["std"])})

    def as_dict(self) -> dict:
        return asdict(self)

    def metadata(self) -> dict:
        """As recorded in the encoder metadata."""
        return {
            "image_size": f"{self.crop_width}x{self.crop_height}",
            "image_resize_shortest_edge": self.shortest_edge,
            "image_mean": list(self.mean),
            "image_std": list(self.std),
            "image_resample": Image.Resampling(self.resample).name,
        }

    def __call__(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> float32 CHW array, normalised."""
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)  # as transformers rounds
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        image = image.resize((new_w, new_h), resample=self.resample)
        left, top = (new_w - self.crop_width) // 2, (new_h - self.crop_height) // 2
        image = image.crop((left, top, left + self.crop_width, top + self.crop_height))
        arr = np.asarray(image, dtype=np.float32) * (1 / 255.0)
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return arr.transpose(2, 0, 1)
