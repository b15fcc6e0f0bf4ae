"""Pick the encoder class for a configured model by its architecture (its config.json), and load the
exact model that wrote a served table."""

from __future__ import annotations

import json
from collections.abc import Collection
from functools import lru_cache
from typing import TYPE_CHECKING

from mm_assets.config import EncoderConfig
from mm_assets.encoders.exported import ExportedClipEncoder, load_exported_clip
from mm_assets.encoders.identity import recorded_config
from mm_assets.encoders.resolve import resolve_model
from mm_assets.store.catalog import EncoderTable
from mm_assets.store.duck import VectorDBError

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


@lru_cache(maxsize=4)
def _load_checked(config: EncoderConfig, revision: str) -> Encoder | ExportedClipEncoder:
    encoder = load_encoder(config)
    if encoder.resolved.revision != revision:
        raise VectorDBError(
            f"the model {config.model} has changed since its vectors were written (recorded {revision}, now "
            f"{encoder.resolved.revision}); rematerialize that encoder's embeddings or restore the model"
        )
    return encoder


def recorded_encoder(table: EncoderTable) -> Encoder | ExportedClipEncoder:
    """The exact model that wrote the table, whatever the config says today."""
    return _load_checked(recorded_config(table.metadata), table.metadata["revision"])
