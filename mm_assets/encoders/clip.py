"""A CLIP encoder: both towers of one model, fast image preprocessing, normalised embeddings."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

import mm_assets
from mm_assets.config import EncoderConfig
from mm_assets.encoders.precision import MIN_COSINE_TO_FP32, resolve_precision
from mm_assets.encoders.resolve import resolve_model

LINEAGE_FILE = "mm_assets_lineage.json"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class ClipEncoder:
    """Loads once; embeds preprocessed image arrays and text, returning unit-norm float32 rows."""

    def __init__(self, config: EncoderConfig):
        self.config = config
        self.resolved = resolve_model(config.model, config.revision)
        self.device = pick_device(config.device)
        self.model = CLIPModel.from_pretrained(self.resolved.local_dir, use_safetensors=True, dtype=torch.float32)
        self.model.to(self.device).eval()
        self.dtype = torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(self.resolved.local_dir)
        self.preprocess = ImagePreprocessing.from_model_dir(self.resolved.local_dir)
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings)
        self.dim = int(self.model.config.projection_dim)
        self.calibration_cosine: float | None = None
        self._set_precision(resolve_precision(config.dtype, config.device))

    def _set_precision(self, precision: str) -> None:
        """Cast to the wanted precision; under ``auto``, keep it only if it stays within
        MIN_COSINE_TO_FP32 of float32 on a fixed calibration batch (images and texts)."""
        if precision == "float32":
            return
        calibration = _calibration_inputs(self.preprocess)
        reference = self._embed_calibration(calibration) if self.config.dtype == "auto" else None
        self.model.to(_DTYPES[precision])
        self.dtype = _DTYPES[precision]
        if reference is not None:
            reduced = self._embed_calibration(calibration)
            self.calibration_cosine = float((reference * reduced).sum(axis=1).min())
            if self.calibration_cosine < MIN_COSINE_TO_FP32:
                self.model.to(torch.float32)
                self.dtype = torch.float32

    def _embed_calibration(self, calibration: tuple[np.ndarray, list[str]]) -> np.ndarray:
        pixels, texts = calibration
        return np.concatenate([self.embed_pixels(pixels), self.embed_texts(texts)])

    @property
    def precision(self) -> str:
        return next(name for name, dtype in _DTYPES.items() if dtype == self.dtype)

    @torch.inference_mode()
    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(pixels).to(self.device, self.dtype)
        out = self.model.get_image_features(pixel_values=batch).pooler_output
        return _normalise(out)

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.embed_pixels(np.stack([self.preprocess(im) for im in images]))

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt").to(
            self.device
        )
        out = self.model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return _normalise(out.pooler_output)

    def lineage(self) -> dict | None:
        """How a fine-tuned model was made (written beside its weights by the training step)."""
        path = self.resolved.local_dir / LINEAGE_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def metadata(self) -> dict:
        """Everything needed to know what produced a vector, and to load the same model again."""
        p = self.preprocess
        return {
            "encoder": self.config.name,
            "fingerprint": self.config.fingerprint,
            "model_id": self.resolved.model_id,
            "model_dir": str(self.resolved.local_dir),
            "revision": self.resolved.revision,
            "architecture": (self.model.config.architectures or ["CLIPModel"])[0],
            "embedding_dim": self.dim,
            "image_size": f"{p.crop_width}x{p.crop_height}",
            "image_resize_shortest_edge": p.shortest_edge,
            "image_mean": list(p.mean),
            "image_std": list(p.std),
            "image_resample": Image.Resampling(p.resample).name,
            "max_tokens": self.max_tokens,
            "dtype": self.precision,
            "dtype_requested": self.config.dtype,
            "calibration_cosine_to_fp32": self.calibration_cosine,
            "device": self.device,
            "parameters": sum(t.numel() for t in self.model.parameters()),
            "modalities": list(self.config.modalities),
            "lineage": self.lineage(),
            "versions": {
                "mm_assets": mm_assets.__version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
            },
        }


def _calibration_inputs(preprocess: ImagePreprocessing) -> tuple[np.ndarray, list[str]]:
    """Fixed, photo-like inputs: smooth colour fields, and ordinary captions."""
    rng = np.random.default_rng(0)
    images = []
    for _ in range(4):
        coarse = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        images.append(preprocess(Image.fromarray(coarse).resize((256, 192), Image.Resampling.BILINEAR)))
    texts = ["a photo of a dog on a beach", "two people hiking in the mountains", "a bowl of soup", "city at night"]
    return np.stack(images), texts


def _normalise(features: torch.Tensor) -> np.ndarray:
    features = features.float()
    return torch.nn.functional.normalize(features, dim=-1).cpu().numpy()
