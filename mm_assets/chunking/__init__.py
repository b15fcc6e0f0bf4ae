"""Chunking: text windows, whole images and tiles, document pages and figures, video frames with
subtitles, audio windows.

A chunk id is a hash of (file id, chunker version, the file kind's parameters, position, and the
content address of anything the chunk takes from outside the file: an image a markdown file links,
a subtitle file), so identical content gives identical chunks wherever it lives, and changing a
parameter or a strategy's version changes ids (and marks the chunk and embedding assets stale). The
tokenizer enters by the content of its files, not by where it is stored: switching to another model
with the same tokenizer keeps every chunk id (and every vector of the old model's table).
"""

from __future__ import annotations

from mm_assets.chunking.text import STRATEGY_VERSIONS, TextChunker
from mm_assets.config import Settings
from mm_assets.encoders.identity import fingerprint
from mm_assets.encoders.resolve import tokenizer_identity
from mm_assets.hashing import short_hash

# Bumped when chunking code changes its output for the same parameters (part of every chunk id).
CHUNKER_VERSION = "2"
# Longest side of the JPEG kept for an image cut out of a file (a PDF figure, a frame, a linked image).
IMAGE_CHUNK_MAX_SIDE = 512


def chunking_params(settings: Settings) -> dict[str, dict]:
    """Per file kind, everything that decides its chunks."""
    c = settings.chunking
    text = {
        "tokenizer": tokenizer_identity(settings.tokenizer_model),
        "max_tokens": c.max_tokens,
        "overlap": c.overlap_tokens,
        "strategy": c.text_strategy,
        "strategy_version": STRATEGY_VERSIONS[c.text_strategy],
    }
    if c.text_strategy == "semantic":
        # Breakpoints depend on the sentence embeddings: the encoder that makes them is a parameter.
        text.update(semantic_percentile=c.semantic_percentile, semantic_encoder=fingerprint(settings.default_encoder))
    return {
        "text": text,
        # items: with a fused encoder configured, a captioned image is also an item (chunking/by_kind.py)
        "image": {"tiles": c.image_tiles, **({"items": True} if settings.fused_items else {})},
        "document": {"text": text, "render_pages": c.pdf_render_pages, "image_max_side": IMAGE_CHUNK_MAX_SIDE},
        "video": {
            "text": text,
            "every_seconds": c.video_every_seconds,
            "scene_threshold": c.video_scene_threshold,
            "max_frames": c.video_max_frames,
            "image_max_side": IMAGE_CHUNK_MAX_SIDE,
        },
        "audio": {"window_seconds": c.audio_window_seconds, "overlap_seconds": c.audio_overlap_seconds},
    }


def chunk_id_of(file_id: str, modality: str, params: dict, position: int, content: str | None = None) -> str:
    return short_hash([file_id, CHUNKER_VERSION, modality, params, position, content], length=32)


def text_chunker(settings: Settings, params: dict) -> TextChunker:
    """The configured tokenizer and, for the semantic strategy, the default encoder's text tower
    (both load models: call this when a step runs, not when the definitions load)."""
    from transformers import AutoTokenizer

    from mm_assets.encoders.load import load_encoder
    from mm_assets.encoders.resolve import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(settings.tokenizer_model).local_dir)
    embed_sentences = None
    if settings.chunking.text_strategy == "semantic":
        embed_sentences = load_encoder(settings.default_encoder).embed_texts
    return TextChunker(tokenizer, params, embed_sentences)
