"""A query as a vector in a table's space: embedded by the model recorded for that table (never by
whatever the config says today), expanded for late fusion, text vectors kept for re-asked queries."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mm_assets.encoders.fusion import query_in_table
from mm_assets.encoders.load import recorded_encoder
from mm_assets.formats.images import decode_rgb
from mm_assets.formats.reading import read_file_bytes
from mm_assets.store.catalog import EncoderTable

if TYPE_CHECKING:  # transformers: only when a model has no complete ONNX export
    from mm_assets.encoders.base import Encoder

# A query photo may be larger than files worth indexing; still a bound on what is decoded.
QUERY_IMAGE_MAX_PIXELS = 200_000_000
TEXT_VECTORS_CACHED = 256


def embed_query(
    encoder: Encoder,
    text: str | None = None,
    image: str | Path | bytes | None = None,
    audio: str | Path | bytes | None = None,
    *,
    max_pixels: int = QUERY_IMAGE_MAX_PIXELS,
) -> np.ndarray:
    """A text, an image or an audio clip (its first window: the length the model takes) as a vector;
    an image or audio clip is a path or the file's bytes."""
    given = {name: value for name, value in (("text", text), ("image", image), ("audio", audio)) if value is not None}
    if len(given) != 1:
        raise ValueError("give exactly one query: a text, an image or an audio file")
    ((modality, query),) = given.items()
    if modality != "text" and modality not in encoder.modalities:
        raise ValueError(
            f"encoder {encoder.config.name!r} embeds {' and '.join(sorted(encoder.modalities))}: it cannot take "
            f"an {modality} query; pick another encoder with --encoder"
        )
    if modality == "text":
        return encoder.embed_texts([query])[0]
    if modality == "audio":
        from mm_assets.formats.audio_video import decode_audio  # PyAV: only for audio queries

        clip = query if isinstance(query, bytes) else str(query)
        return encoder.embed_audio([decode_audio(clip, encoder.sample_rate, 0.0, encoder.max_seconds)])[0]
    data = query if isinstance(query, bytes) else read_file_bytes(str(query), max_bytes=2**31)
    rgb = decode_rgb(data, max_pixels, min_side=encoder.preprocess.shortest_edge)
    return encoder.embed_images([rgb])[0]


class QueryVectors:
    """Queries embedded in a table's space; text vectors by (encoder key, text) are kept, since the
    page re-asks the same text with other filters."""

    def __init__(self, max_image_pixels: int = QUERY_IMAGE_MAX_PIXELS):
        self.max_image_pixels = max_image_pixels  # query images larger than this are refused
        self._texts: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def embed(self, table: EncoderTable, text=None, image=None, audio=None) -> np.ndarray:
        fusion = table.metadata.get("fusion")
        if text is None or image is not None or audio is not None:
            vector = embed_query(recorded_encoder(table), text, image, audio, max_pixels=self.max_image_pixels)
            return query_in_table(vector, fusion)
        key = (table.encoder_key, text)
        if key not in self._texts:
            vector = query_in_table(embed_query(recorded_encoder(table), text), fusion)
            self._texts[key] = vector.astype(np.float32)
            if len(self._texts) > TEXT_VECTORS_CACHED:
                self._texts.popitem(last=False)
        self._texts.move_to_end(key)
        return self._texts[key]
