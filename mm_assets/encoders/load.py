"""Pick the encoder class for a configured model by its architecture (its config.json)."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import TYPE_CHECKING

from mm_assets.config import EncoderConfig
from mm_assets.encoders.exported import ExportedClipEncoder, load_exported_clip
from mm_assets.encoders.resolve import resolve_model

if TYPE_CHECKING:  # torch: only where the export alone cannot do
    from mm_assets.encoders.base import Encoder


def load_encoder(config: EncoderConfig, modalities: Collection[str] | None = None) -> Encoder | ExportedClipEncoder:
    """A CLIP model gives an image–text encoder (from its ONNX export alone once there is a complete
    one for this configuration), a CLAP model an audio–text one. ``modalities``: what the caller
    embeds first (default: all); an exported CLIP opens the other tower when first used."""
    resolved = resolve_model(config.model, config.revision)
    model_type = json.loads((resolved.local_dir / "config.json").read_text()).get("model_type")
    if model_type == "clip":
        exported = load_exported_clip(config, resolved, modalities)
        if exported is not None:
            return exported
        from mm_assets.encoders.clip import ClipEncoder

        return ClipEncoder(config, resolved)
    if model_type == "clap":
        from mm_assets.encoders.clap import ClapEncoder

        return ClapEncoder(config, resolved)
    raise ValueError(f"encoder {config.name!r}: {config.model} is a {model_type!r} model; mm_assets runs CLIP and CLAP")
