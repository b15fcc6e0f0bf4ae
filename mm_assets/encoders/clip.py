"""A CLIP encoder: both towers of one model, fast image preprocessing, normalised embeddings."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from transformers import CLIPModel

from mm_assets.encoders.base import PRECISION_CHECK_TEXTS, Encoder, normalise
from mm_assets.encoders.image_preprocessing import ImagePreprocessing
from mm_assets.encoders.runtime import TowerGraph, normalise_rows


class ClipEncoder(Encoder):
    """CLIP: image and text towers of one model, with fast image preprocessing."""

    model_class = CLIPModel
    modalities = frozenset({"image", "text"})

    def _load_preprocessing(self) -> None:
        self.preprocess = ImagePreprocessing.from_model_dir(self.resolved.local_dir)
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings)

    def _embed_check_inputs(self) -> np.ndarray:
        return np.concatenate(
            [self.embed_pixels(_check_images(self.preprocess)), self.embed_texts(PRECISION_CHECK_TEXTS)]
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
            return normalise_rows(self._onnx["image"](pixel_values=np.ascontiguousarray(pixels, np.float32)))
        batch = torch.from_numpy(pixels).to(self.device, self.dtype)
        return normalise(self.model.get_image_features(pixel_values=batch).pooler_output)

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.embed_pixels(np.stack([self.preprocess(im) for im in images]))

    def preprocessing_metadata(self) -> dict:
        return self.preprocess.metadata()

    def _export_settings(self) -> dict:
        return {"preprocessing": self.preprocess.as_dict()}


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


def _check_images(preprocess: ImagePreprocessing) -> np.ndarray:
    """Fixed, photo-like inputs: smooth colour fields."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(4):
        coarse = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        images.append(preprocess(Image.fromarray(coarse).resize((256, 192), Image.Resampling.BILINEAR)))
    return np.stack(images)
