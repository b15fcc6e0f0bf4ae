"""Stream chunks through an encoder: a decode thread pool feeds batched forward passes.

Image and audio decoding and preprocessing run in threads (Pillow and FFmpeg release the GIL), at
most a few batches ahead of the model, so memory stays flat however large the batch of files is.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mm_assets.formats import failure_reason
from mm_assets.formats.images import decode_rgb
from mm_assets.formats.reading import check_ingested_path, read_ingested_file
from mm_assets.formats.shared_decodes import take_decoded

if TYPE_CHECKING:  # the encoder is passed in; importing it here would pull torch into every importer
    from mm_assets.encoders.base import Encoder
    from mm_assets.encoders.clap import ClapEncoder
    from mm_assets.encoders.clip import ClipEncoder

WriteBatch = Callable[[list[str], np.ndarray], None]


@dataclass
class StageTimes:
    """Seconds per stage. read/decode/preprocess are summed over decode threads (CPU time, not wall)."""

    read: float = 0.0
    decode: float = 0.0
    preprocess: float = 0.0
    forward: float = 0.0
    write: float = 0.0
    wall: float = 0.0
    embedded: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (chunk_id, reason)

    def as_metadata(self, prefix: str) -> dict[str, float]:
        rate = self.embedded / self.wall if self.wall else 0.0
        out = {
            f"{prefix}_seconds_{k}": round(getattr(self, k), 4)
            for k in ("read", "decode", "preprocess", "forward", "write", "wall")
        }
        out[f"{prefix}_per_second"] = round(rate, 2)
        return out


@dataclass(frozen=True)
class ImageJob:
    """Image chunks of one file: regions (bboxes) of the file itself, or, with ``data``, one image
    cut out of it earlier (a PDF figure, a video frame: the JPEG the chunk stores)."""

    file_id: str
    path: str
    chunk_ids: tuple[str, ...]
    bboxes: tuple[tuple[float, float, float, float], ...]
    data: bytes | None = None


@dataclass(frozen=True)
class AudioJob:
    """Consecutive audio windows of one file, (start, end) seconds per chunk: a long recording is cut
    into several jobs, each decoding only its stretch. The first job of a file checks its content."""

    file_id: str
    path: str
    chunk_ids: tuple[str, ...]
    spans: tuple[tuple[float, float], ...]
    verify: bool = True


def _bounded_map(pool: ThreadPoolExecutor, fn, items: Iterable, ahead: int) -> Iterator:
    """Like pool.map, in order, but never more than ``ahead`` tasks in flight."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _load_image_job(job: ImageJob, encoder: ClipEncoder, max_pixels: int):
    t0 = time.perf_counter()
    # Tiles need the image decoded larger: a 1/n-wide tile must still cover the model's input size.
    zoom = round(1 / min(b[2] - b[0] for b in job.bboxes))
    side = encoder.preprocess.shortest_edge * zoom
    image = take_decoded(job.file_id, side) if job.data is None else None  # ingest's decode, in this run
    if image is None:
        data = job.data if job.data is not None else read_ingested_file(job.path, job.file_id)
        t1 = time.perf_counter()
        image = decode_rgb(data, max_pixels, min_side=side)
    else:
        t1 = t0
    t2 = time.perf_counter()
    w, h = image.size
    pixels = [
        encoder.preprocess(
            image
            if b == (0.0, 0.0, 1.0, 1.0)
            else image.crop((round(b[0] * w), round(b[1] * h), round(b[2] * w), round(b[3] * h)))
        )
        for b in job.bboxes
    ]
    return pixels, (t1 - t0, t2 - t1, time.perf_counter() - t2)


def _load_audio_job(job: AudioJob, encoder: ClapEncoder):
    from mm_assets.formats.audio_video import decode_audio  # PyAV: only where audio is embedded

    t0 = time.perf_counter()
    path = check_ingested_path(job.path, job.file_id) if job.verify else job.path
    t1 = time.perf_counter()
    start = job.spans[0][0]
    pcm = decode_audio(path, encoder.sample_rate, start, max(b for _, b in job.spans))
    t2 = time.perf_counter()
    rate, longest = encoder.sample_rate, int(encoder.sample_rate * encoder.max_seconds)
    windows = []
    for a, b in job.spans:
        first = int(round((a - start) * rate))
        windows.append(pcm[first : first + min(longest, max(1, int(round((b - a) * rate))))])
    return windows, (t1 - t0, t2 - t1, time.perf_counter() - t2)


def _guarded(load):
    """A loader that reports a failure instead of raising: one undecodable file never fails the batch."""

    def run(job):
        try:
            return job, *load(job), None
        except Exception as exc:
            return job, None, (0.0, 0.0, 0.0), failure_reason(exc)

    return run


def _embed_jobs(jobs, load, embed_batch, write: WriteBatch, *, batch_size: int, workers: int, progress) -> StageTimes:
    """Load jobs in a thread pool (in order, a bounded distance ahead) and embed their items in batches."""
    stats = StageTimes()
    start = time.perf_counter()
    ids: list[str] = []
    items: list = []

    def flush():
        t0 = time.perf_counter()
        vectors = embed_batch(items)
        t1 = time.perf_counter()
        write(list(ids), vectors)
        stats.forward += t1 - t0
        stats.write += time.perf_counter() - t1
        stats.embedded += len(ids)
        progress(len(ids))
        ids.clear()
        items.clear()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        for job, loaded, (t_read, t_decode, t_pre), error in _bounded_map(
            pool, _guarded(load), jobs, ahead=2 * batch_size
        ):
            stats.read += t_read
            stats.decode += t_decode
            stats.preprocess += t_pre
            if error:
                stats.failures.extend((cid, error) for cid in job.chunk_ids)
                progress(len(job.chunk_ids))
                continue
            ids.extend(job.chunk_ids)
            items.extend(loaded)
            if len(ids) >= batch_size:
                flush()
    if ids:
        flush()
    stats.wall = time.perf_counter() - start
    return stats


def embed_images(
    encoder: ClipEncoder,
    jobs: Iterable[ImageJob],
    write: WriteBatch,
    *,
    max_pixels: int,
    workers: int,
    progress: Callable[[int], None] = lambda n: None,
) -> StageTimes:
    return _embed_jobs(
        jobs,
        lambda job: _load_image_job(job, encoder, max_pixels),
        lambda pixels: encoder.embed_pixels(np.stack(pixels)),
        write,
        batch_size=encoder.config.batch_size,
        workers=workers,
        progress=progress,
    )


def embed_audio(
    encoder: ClapEncoder,
    jobs: Iterable[AudioJob],
    write: WriteBatch,
    *,
    workers: int,
    progress: Callable[[int], None] = lambda n: None,
) -> StageTimes:
    return _embed_jobs(
        jobs,
        lambda job: _load_audio_job(job, encoder),
        encoder.embed_audio,
        write,
        batch_size=encoder.config.batch_size,
        workers=workers,
        progress=progress,
    )


def embed_texts(
    encoder: Encoder,
    chunks: list[tuple[str, str]],
    write: WriteBatch,
    progress: Callable[[int], None] = lambda n: None,
) -> StageTimes:
    """(chunk_id, text) pairs, batched by length so padding stays small."""
    stats = StageTimes()
    start = time.perf_counter()
    ordered = sorted(chunks, key=lambda c: len(c[1]))
    for i in range(0, len(ordered), encoder.config.batch_size):
        batch = ordered[i : i + encoder.config.batch_size]
        t0 = time.perf_counter()
        vectors = encoder.embed_texts([text for _, text in batch])
        t1 = time.perf_counter()
        write([cid for cid, _ in batch], vectors)
        stats.forward += t1 - t0
        stats.write += time.perf_counter() - t1
        stats.embedded += len(batch)
        progress(len(batch))
    stats.wall = time.perf_counter() - start
    return stats
