"""Build CLIP models from scratch, locally (no hub): the demo's starting point and the tests' models.

The tokenizer is CLIP's byte-level BPE with a vocabulary made here: every byte as a symbol, plus
whole-word tokens for the given words (merges that build each word left to right).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes that CLIP's byte-level BPE uses."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def build_tokenizer(words: tuple[str, ...] = ()) -> CLIPTokenizer:
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    merges: list[tuple[int, str, str]] = []
    for word in sorted({w.lower() for w in words if len(w) > 1 and w.isascii() and w.isalpha()}):
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        prefix = parts[0]
        for depth, part in enumerate(parts[1:], 1):
            merges.append((depth, prefix, part))
            prefix += part
    # shorter prefixes first, so each word is built left to right
    merges = sorted(set(merges))
    tokens += [a + b for _, a, b in merges]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for _, a, b in merges))
        return CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"))


def build_random_clip(
    directory: Path,
    seed: int,
    text_config: dict,
    vision_config: dict,
    projection_dim: int,
    words: tuple[str, ...] = (),
) -> Path:
    """A CLIP with random weights and its tokenizer and image processor, saved like a hub model."""
    tokenizer = build_tokenizer(words)
    vocab = tokenizer.get_vocab()
    eos = vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "max_position_embeddings": 77,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": eos,
            "pad_token_id": eos,
            **text_config,
        },
        vision_config=vision_config,
        projection_dim=projection_dim,
    )
    config.text_config.vocab_size = max(config.text_config.vocab_size, len(vocab))
    torch.manual_seed(seed)
    model = CLIPModel(config)
    size = config.vision_config.image_size
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
        tokenizer=tokenizer,
    )
    directory.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(directory)
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def build_small_clip(
    directory: Path,
    seed: int,
    *,
    text_width: int,
    vision_width: int,
    text_layers: int,
    vision_layers: int,
    heads: int,
    image_size: int,
    projection_dim: int,
    words: tuple[str, ...] = (),
) -> Path:
    """A narrow CLIP (MLP 2× the width, patch 8) for demos and tests."""
    return build_random_clip(
        directory,
        seed,
        text_config=dict(
            hidden_size=text_width,
            intermediate_size=2 * text_width,
            num_hidden_layers=text_layers,
            num_attention_heads=heads,
        ),
        vision_config=dict(
            image_size=image_size,
            patch_size=8,
            hidden_size=vision_width,
            intermediate_size=2 * vision_width,
            num_hidden_layers=vision_layers,
            num_attention_heads=heads,
        ),
        projection_dim=projection_dim,
        words=words,
    )
