"""A CLIP encoder: both towers of one model, fast image preprocessing, normalised embeddings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, CLIPModel

from mm_assets.encoders.base import CALIBRATION_TEXTS, Encoder, normalise
from mm_assets.encoders.runtime import TowerGraph


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

    def _tower_graphs(self) -> dict[str, TowerGraph]:
        p, length = self.preprocess, min(self.max_tokens, 8)
        return {
            "image": TowerGraph(
                "image",
                ImageFeatures(self.model),
                {"pixel_values": torch.zeros(2, 3, p.crop_height, p.crop_width)},
                {"pixel_values": {0: "batch"}},
            ),
            "text": TowerGraph(
                "text",
                TextFeatures(self.model),
                {
                    "input_ids": torch.ones(2, length, dtype=torch.long),
                    "attention_mask": torch.ones(2, length, dtype=torch.long),
                },
                {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
            ),
        }

    @torch.inference_mode()
    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        if "image" in self._onnx:
            return normalise(
                torch.from_numpy(self._onnx["image"](pixel_values=np.ascontiguousarray(pixels, np.float32)))
            )
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


class ImageFeatures(torch.nn.Module):
    """pixels -> projected image embedding: the graph ONNX Runtime runs for the image tower."""

    def __init__(self, model: CLIPModel):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output


class TextFeatures(torch.nn.Module):
    """token ids and mask -> projected text embedding: the text tower's graph."""

    def __init__(self, model: CLIPModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output


def _calibration_images(preprocess: ImagePreprocessing) -> np.ndarray:
    """Fixed, photo-like inputs: smooth colour fields."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(4):
        coarse = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        images.append(preprocess(Image.fromarray(coarse).resize((256, 192), Image.Resampling.BILINEAR)))
    return np.stack(images)
