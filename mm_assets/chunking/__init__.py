"""Chunking: text windows that fit the encoder's context, whole images and optional tiles.

A chunk id is a hash of (file id, chunker version, the modality's parameters, position), so
identical content gives identical chunks wherever it lives, and changing a parameter changes ids.
"""

from __future__ import annotations

from mm_assets.config import Settings, short_hash

# Bumped when chunking code changes its output for the same parameters (part of every chunk id).
CHUNKER_VERSION = "1"


def chunking_params(settings: Settings) -> dict[str, dict]:
    c = settings.chunking
    return {
        "text": {"tokenizer": settings.tokenizer_source, "max_tokens": c.max_tokens, "overlap": c.overlap_tokens},
        "image": {"tiles": c.image_tiles},
    }


def chunk_id_of(file_id: str, modality: str, params: dict, position: int) -> str:
    return short_hash([file_id, CHUNKER_VERSION, modality, params, position], length=32)
