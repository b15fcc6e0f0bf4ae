"""A CLIP encoder: both towers of one model, fast image preprocessing, normalised embeddings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, CLIPModel

from mm_assets.encoders.base import CALIBRATION_TEXTS, Encoder, normalise


@dataclass(frozen=True)
class ImagePreprocessing:
    """What CLIPImageProcessor does, done directly on PIL images (resize, center crop, normalise)."""

    shortest_edge: int
    crop_height: int
    crop_width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> ImagePreprocessing:
        """The preprocessing a saved model declares (its processor config)."""
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


class ClipEncoder(Encoder):
    """CLIP: image and text towers of one model, with fast image preprocessing."""

    model_class = CLIPModel
    modalities = frozenset({"image", "text"})

    def _load_preprocessing(self) -> None:
        self.preprocess = ImagePreprocessing.from_model_dir(self.resolved.local_dir)
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings)

    def _embed_calibration(self) -> np.ndarray:
        return np.concatenate(
            [self.embed_pixels(_calibration_images(self.preprocess)), self.embed_texts(CALIBRATION_TEXTS)]
        )

    @torch.inference_mode()
    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(pixels).to(self.device, self.dtype)
        return normalise(self.model.get_image_features(pixel_values=batch).pooler_output)

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.embed_pixels(np.stack([self.preprocess(im) for im in images]))

    def preprocessing_metadata(self) -> dict:
        p = self.preprocess
        return {
            "image_size": f"{p.crop_width}x{p.crop_height}",
            "image_resize_shortest_edge": p.shortest_edge,
            "image_mean": list(p.mean),
            "image_std": list(p.std),
            "image_resample": Image.Resampling(p.resample).name,
        }


def _calibration_images(preprocess: ImagePreprocessing) -> np.ndarray:
    """Fixed, photo-like inputs: smooth colour fields."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(4):
        coarse = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        images.append(preprocess(Image.fromarray(coarse).resize((256, 192), Image.Resampling.BILINEAR)))
    return np.stack(images)
