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
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
_full = False  # an offer was refused for want of budget: decoding further ahead would be wasted
_ahead: dict[str, Future] = {}  # path -> its decode ahead of ingest
_ahead_pool: ThreadPoolExecutor | None = None


@contextmanager
def sharing_decodes(budget_bytes: int = DEFAULT_BUDGET_BYTES) -> Iterator[None]:
    """Within this block, decodes kept by ingest can be taken by the embedding (this process only).
    A scope opened inside another (or beside it, in another thread) shares the one already open."""
    global _kept, _budget_left, _full, _ahead_pool
    with _lock:
        owner = _kept is None
        if owner:
            _kept, _budget_left, _full = {}, budget_bytes, False
    if not owner:
        yield
        return
    try:
        yield
    finally:
        with _lock:
            pool, _ahead_pool = _ahead_pool, None
            _kept, _budget_left, _full = None, 0, False
            _ahead.clear()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def decode_ahead(paths: list[str], decode: Callable[[str], None], workers: int) -> None:
    """Start decoding these files in background threads (``decode`` keeps what it decodes), ahead of
    the ingest step: `mm-assets run` spends its first seconds importing Dagster and starting its
    instance, mostly on one core, and the others can meanwhile decode the new images. Within a
    sharing scope; ingest settles each path (``settle_ahead``) before it reads the file. Once the
    budget is full the rest are left to ingest: an image decoded ahead but not kept would be decoded
    twice (a 10,000-photo batch fills the budget within its first few hundred)."""
    global _ahead_pool

    def decode_unless_full(path: str) -> None:
        if not _full:
            decode(path)

    with _lock:
        if _kept is None or _ahead_pool is not None:  # not sharing, or already decoding ahead
            return
        _ahead_pool = ThreadPoolExecutor(workers, thread_name_prefix="decode-ahead")
        # Queue no more than the budget can hold at the shared side: a first run over a million
        # photos would otherwise queue a million futures (gigabytes) for decodes ingest does anyway.
        most = _budget_left // (SHARED_DECODE_SIDE * SHARED_DECODE_SIDE * 3) + workers
        _ahead.update({path: _ahead_pool.submit(decode_unless_full, path) for path in paths[:most]})


def settle_ahead(path: str) -> None:
    """Ingest is about to inspect ``path``: cancel its decode ahead if it has not started (ingest
    decodes it itself), or wait for it to finish (it is kept, or it failed and ingest will say why)."""
    with _lock:
        future = _ahead.pop(path, None)
    if future is not None and not future.cancel():
        future.exception()


def keep_decoded(file_id: str, side: int, image: Image.Image) -> None:
    """Offer a decoded image for the embedding; ignored when not sharing or over budget."""
    global _budget_left, _full
    size = _bytes(image)
    with _lock:
        if _kept is None or (file_id, side) in _kept:
            return
        if size <= _budget_left:
            _kept[(file_id, side)] = image
            _budget_left -= size
        else:
            _full = True


def peek_decoded(file_id: str, side: int) -> Image.Image | None:
    """The image kept for this content at this side, left for the embedding to take."""
    with _lock:
        return _kept.get((file_id, side)) if _kept is not None else None


def take_decoded(file_id: str, side: int) -> Image.Image | None:
    """The image ingest decoded from this content at this side, once (its budget is freed), or None."""
    global _budget_left
    with _lock:
        image = _kept.pop((file_id, side), None) if _kept is not None else None
        if image is not None:
            _budget_left += _bytes(image)
    return image


def drop_kept_decodes() -> None:
    """Free what is still kept: the batches are embedded and nothing will take it (images already
    embedded, or an encoder that decodes at another side), so the steps after need not carry it."""
    global _budget_left
    with _lock:
        if _kept is not None:
            _budget_left += sum(_bytes(image) for image in _kept.values())
            _kept.clear()


def _bytes(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())
