"""Items: an image and its caption as one vector (a fused encoder, ``fuse:`` in the settings).

intermediate: the weighted sum of the two unit vectors, renormalised. late: the two weighted vectors
side by side (twice the dimension), so that a product is the weighted sum of the two cosines, served
as one vector; queries of the model are expanded alike (``query_in_table``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from mm_assets.encoders.runtime import normalise_rows

if TYPE_CHECKING:  # the encoder is passed in; importing it here would pull torch into the definitions
    from mm_assets.encoders.base import Encoder


def fused_writer(encoder: Encoder, captions: dict[str, str], write: Callable[[list[str], np.ndarray], None]):
    """A writer of item vectors: each image's vector fused with its caption's (the same model's text
    tower) as the encoder's ``fuse`` says."""
    fuse = encoder.config.fuse

    def write_items(ids: list[str], image_vectors: np.ndarray) -> None:
        text_vectors = encoder.embed_texts([captions[i] for i in ids])
        write(ids, fuse_vectors(image_vectors, text_vectors, fuse.image_weight, fuse.mode))

    return write_items


def fuse_vectors(images: np.ndarray, texts: np.ndarray, image_weight: float, mode: str = "intermediate") -> np.ndarray:
    """Unit item vectors from unit image and text vectors. intermediate: the weighted sum, renormalised.
    late: [sqrt(w) image, sqrt(1 - w) text], whose product with another item's is w cos(images) +
    (1 - w) cos(texts), and with a query expanded alike (query_in_table) w cos(q, image) + (1 - w)
    cos(q, text): score-level fusion, served as one vector."""
    images, texts = np.asarray(images, np.float32), np.asarray(texts, np.float32)
    if mode == "late":
        return np.hstack([np.sqrt(image_weight) * images, np.sqrt(1 - image_weight) * texts]).astype(np.float32)
    return normalise_rows(image_weight * images + (1 - image_weight) * texts)


def query_in_table(vectors: np.ndarray, fusion: dict | None) -> np.ndarray:
    """Query vectors of the model in the space of a table: as they are, or for a late-fusion item
    table, side by side with themselves (image half and text half, weighted as the items are)."""
    if not fusion or fusion.get("mode") != "late":
        return vectors
    w = fusion["image_weight"]
    return np.concatenate([np.sqrt(w) * vectors, np.sqrt(1 - w) * vectors], axis=-1).astype(np.float32)
