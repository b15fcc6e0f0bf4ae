"""What `mm-assets run` does before Dagster: check the models, discover what changed, and start
decoding the new images.

Kept free of Dagster's import on purpose: importing it and starting its instance takes the first
3-4 seconds of a run, mostly on one core, and the images of the new batch decode meanwhile
(formats/shared_decodes.py): on 2 cores the ingest step of 400 photos went from 2.1 to 1.0-1.7 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mm_assets.config import Settings
from mm_assets.encoders.resolve import resolve_model
from mm_assets.formats.shared_decodes import sharing_decodes
from mm_assets.ingest.batches import create_batch, read_manifest
from mm_assets.ingest.inspect import decode_images_ahead


@dataclass(frozen=True)
class Discovered:
    new_batch: str | None  # the batch of what was added, edited or deleted; None if nothing was


@contextmanager
def discovering(settings: Settings, sources: list[Path]) -> Iterator[Discovered]:
    """Fail fast, before any batch exists, when a model is missing; make the new batch; and, for as
    long as the block runs, share decodes (a sharing_decodes scope) with the new batch's images
    decoding in the background."""
    for enc in settings.encoders:
        if not enc.trained_here:
            resolve_model(enc.model, enc.revision)
    resolve_model(settings.tokenizer_model)
    discovered = Discovered(create_batch(settings.layout, sources, max_file_bytes=settings.max_file_bytes))
    with sharing_decodes():
        if discovered.new_batch:
            manifest = read_manifest(settings.layout, discovered.new_batch)
            decode_images_ahead(manifest.files, manifest.boundary, settings.inspection_limits, settings.decode_workers)
        yield discovered
