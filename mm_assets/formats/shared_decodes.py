"""Images decoded once per run: ingest's validation decode handed to the embedding step.

Ingest decodes every image to validate it and take its perceptual hash; the embedding decodes it
again. Entropy decoding a camera JPEG costs ~11 ms of CPU even at reduced DCT scale, as much as a
tenth of an int8 forward pass on an AVX2 core, so a run over photos paid it twice. Where both steps
run in one process, one after the other (`mm-assets run`: Dagster's in-process executor), ingest
keeps what it decoded, within a byte budget, and the embedding takes it instead of reading and
decoding the file again.

Entries are keyed by the file's content id and the side the decode was asked to cover (the reduced
DCT scale depends on it), so an image taken here is exactly what decoding the ingested file gives;
anything else (another side, a tile, a file not kept, another process) decodes as before. Nothing
is kept outside ``sharing_decodes()``: a long-lived process that ingests but never embeds holds
nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

# Ingest decodes at the input side of nearly every CLIP checkpoint (ViT-B/32, B/16, L/14): decoding
# at 224 costs what decoding at 64 does (entropy decoding dominates), and the embedding of such a
# model can then take the image as is.
SHARED_DECODE_SIDE = 224

# A camera JPEG at 1/8 scale is ~0.6 MB of RGB: about 400 of them. A larger batch shares its first
# images and decodes the rest again; each shared image is let go as the embedding takes it.
DEFAULT_BUDGET_BYTES = 256 * 2**20

_lock = threading.Lock()
_kept: dict[tuple[str, int], Image.Image] | None = None  # None: not sharing
_budget_left = 0


@contextmanager
def sharing_decodes(budget_bytes: int = DEFAULT_BUDGET_BYTES) -> Iterator[None]:
    """Within this block, decodes kept by ingest can be taken by the embedding (this process only)."""
    global _kept, _budget_left
    with _lock:
        _kept, _budget_left = {}, budget_bytes
    try:
        yield
    finally:
        with _lock:
            _kept, _budget_left = None, 0


def keep_decoded(file_id: str, side: int, image: Image.Image) -> None:
    """Offer a decoded image for the embedding; ignored when not sharing or over budget."""
    global _budget_left
    size = image.width * image.height * len(image.getbands())
    with _lock:
        if _kept is not None and size <= _budget_left and (file_id, side) not in _kept:
            _kept[(file_id, side)] = image
            _budget_left -= size


def take_decoded(file_id: str, side: int) -> Image.Image | None:
    """The image ingest decoded from this content at this side, once (its budget is freed), or None."""
    global _budget_left
    with _lock:
        image = _kept.pop((file_id, side), None) if _kept is not None else None
        if image is not None:
            _budget_left += image.width * image.height * len(image.getbands())
    return image
