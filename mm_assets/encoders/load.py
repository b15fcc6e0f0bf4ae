"""Pick the encoder class for a configured model by its architecture (its config.json)."""

from __future__ import annotations

import json

from mm_assets.config import EncoderConfig
from mm_assets.encoders.base import Encoder
from mm_assets.encoders.resolve import resolve_model


def load_encoder(config: EncoderConfig) -> Encoder:
    """A CLIP model gives an image–text encoder, a CLAP model an audio–text one."""
    resolved = resolve_model(config.model, config.revision)
    model_type = json.loads((resolved.local_dir / "config.json").read_text()).get("model_type")
    if model_type == "clip":
        from mm_assets.encoders.clip import ClipEncoder

        return ClipEncoder(config, resolved)
    if model_type == "clap":
        from mm_assets.encoders.clap import ClapEncoder

        return ClapEncoder(config, resolved)
    raise ValueError(f"encoder {config.name!r}: {config.model} is a {model_type!r} model; mm_assets runs CLIP and CLAP")
