"""Tiny, deterministic CLIP models built locally: the tests' stand-in for hub models (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes that CLIP's byte-level BPE uses."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def build_tiny_clip(directory: Path, seed: int = 0, projection_dim: int = 16, image_size: int = 32) -> Path:
    """A character-level CLIP tokenizer and a 2-layer CLIP with random weights, saved like a hub model."""
    return build_clip(
        directory, seed,
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision_config=dict(image_size=image_size, patch_size=8, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2),
        projection_dim=projection_dim,
    )


def build_vit_b32_clip(directory: Path, seed: int = 0) -> Path:
    """openai/clip-vit-base-patch32's exact architecture with random weights: the real model's speed."""
    return build_clip(directory, seed, text_config={"vocab_size": 49408}, vision_config={}, projection_dim=512)


def build_clip(directory: Path, seed: int, text_config: dict, vision_config: dict, projection_dim: int) -> Path:
    """A character-level CLIP tokenizer and a CLIP with random weights, saved like a hub model."""
    directory.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
    eos = vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config=dict(vocab_size=max(len(vocab), text_config.pop("vocab_size", 0)), max_position_embeddings=77,
                         bos_token_id=vocab["<|startoftext|>"], eos_token_id=eos, pad_token_id=eos, **text_config),
        vision_config=vision_config,
        projection_dim=projection_dim,
    )
    image_size = config.vision_config.image_size
    torch.manual_seed(seed)
    model = CLIPModel(config)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": image_size},
                                           crop_size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(directory)
    model.save_pretrained(directory)
    (directory / "vocab.json").unlink()
    (directory / "merges.txt").unlink()
    return directory
