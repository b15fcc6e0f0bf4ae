"""Tiny, deterministic CLIP models built locally: the tests' stand-in for hub models (no network)."""

from __future__ import annotations

from pathlib import Path

from mm_assets.training.models import build_random_clip, build_small_clip


def build_tiny_clip(directory: Path, seed: int = 0, projection_dim: int = 16, image_size: int = 32) -> Path:
    """A character-level tokenizer and a 2-layer CLIP with random weights."""
    return build_small_clip(
        directory,
        seed,
        text_width=32,
        vision_width=32,
        text_layers=2,
        vision_layers=2,
        heads=2,
        image_size=image_size,
        projection_dim=projection_dim,
    )


def build_vit_b32_clip(directory: Path, seed: int = 0) -> Path:
    """openai/clip-vit-base-patch32's exact architecture with random weights: the real model's speed."""
    return build_random_clip(directory, seed, text_config={"vocab_size": 49408}, vision_config={}, projection_dim=512)
