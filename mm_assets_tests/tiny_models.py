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


def build_tiny_clap(directory: Path, seed: int = 0, projection_dim: int = 16) -> Path:
    """A 2-layer CLAP (RoBERTa-style text tower, 2-stage HTSAT audio tower) with random weights, a
    byte-level tokenizer and LAION's audio feature extractor, saved like a hub model."""
    import json
    import tempfile

    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, RobertaTokenizer

    from mm_assets.training.models import _byte_symbols

    with tempfile.TemporaryDirectory() as tmp:
        vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", *_byte_symbols(), "<mask>"])}
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = RobertaTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"))
    config = ClapConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=80,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            projection_dim=projection_dim,
        ),
        audio_config=dict(
            depths=[1, 1],
            num_attention_heads=[2, 2],
            patch_embeds_hidden_size=16,
            hidden_size=32,
            projection_dim=projection_dim,
        ),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = ClapModel(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    # Windows are never longer than the model's input, so no cropping (random or fused) ever happens.
    ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(directory)
    return directory
