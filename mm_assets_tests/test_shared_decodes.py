"""Decodes shared within a run (formats/shared_decodes.py): the images decode ahead of the ingest
step, ingest's validation decode reaches the embedding, and none of it changes a vector or a verdict."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from mm_assets.config import EncoderConfig, Settings
from mm_assets.formats import shared_decodes
from mm_assets.formats.images import decode_rgb, perceptual_hash
from mm_assets.formats.reading import Boundary, file_id_of
from mm_assets.formats.shared_decodes import (
    SHARED_DECODE_SIDE,
    drop_kept_decodes,
    keep_decoded,
    sharing_decodes,
    take_decoded,
)
from mm_assets.ingest import inspect as ingest_inspect
from mm_assets.ingest.discover import FoundFile
from mm_assets.ingest.inspect import decode_images_ahead, inspect_batch
from mm_assets.ingest.labels import CaptionIndex
from mm_assets.runs import run_pipeline
from mm_assets_tests.corpus import gradient
from mm_assets_tests.helpers import INSPECT_LIMITS, stored_vectors
from mm_assets_tests.tiny_models import build_tiny_clip


@pytest.fixture(scope="module")
def clip_224(tmp_path_factory):
    """A tiny CLIP whose input side is the one ingest decodes at, so its embedding can take them."""
    return build_tiny_clip(tmp_path_factory.mktemp("models") / "clip-224", seed=3, image_size=SHARED_DECODE_SIDE)


def _photos(folder, n: int = 6):
    folder.mkdir(parents=True)
    for i in range(n):
        size = [(640, 480), (1600, 1200), (300, 900)][i % 3]
        gradient(*size, i).save(folder / f"p{i}.jpg", quality=85)
    gradient(500, 400, 9).save(folder / "p.png")
    return folder


def _found(paths) -> list[FoundFile]:
    return [FoundFile(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]


def _settings(tmp_path, name, model) -> Settings:
    return Settings(
        home=tmp_path / name,
        sources=(tmp_path / "src",),
        encoders=(EncoderConfig(name="clip", model=str(model), batch_size=3),),
        decode_workers=2,
    )


def test_a_run_embeds_the_images_ingest_decoded_and_the_vectors_do_not_change(tmp_path, clip_224, monkeypatch):
    source = _photos(tmp_path / "src")
    decoded_by_embedding = []
    real_decode = ingest_inspect.decode_rgb

    def counting_decode(*args, **kwargs):
        decoded_by_embedding.append(args)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr("mm_assets.encoders.embed.decode_rgb", counting_decode)
    shared = _settings(tmp_path, "shared", clip_224)
    assert run_pipeline(shared, [source], run_config=None).ok
    assert decoded_by_embedding == [], "every image came from ingest's decode"

    # The same run with nothing shared: every image decoded again, the very same vectors.
    monkeypatch.setattr(ingest_inspect, "keep_decoded", lambda *args: None)
    alone = _settings(tmp_path, "alone", clip_224)
    assert run_pipeline(alone, [source], run_config=None).ok
    assert len(decoded_by_embedding) == 7
    (table,) = [t for t in stored_table_names(shared)]
    ids, vectors = stored_vectors(shared, table)
    ids_alone, vectors_alone = stored_vectors(alone, table)
    assert ids == ids_alone and len(ids) == 7 and np.array_equal(vectors, vectors_alone)


def stored_table_names(settings: Settings) -> list[str]:
    from mm_assets_tests.helpers import db_rows

    return [r[0] for r in db_rows(settings, "SELECT table_name FROM encoders")]


def test_an_image_edited_after_it_was_decoded_ahead_is_inspected_as_it_is_now(tmp_path):
    path = tmp_path / "a.jpg"
    gradient(640, 480, 1).save(path, quality=90)
    before = file_id_of(path.read_bytes())
    with sharing_decodes():
        decode_images_ahead(_found([path]), Boundary.of([tmp_path]), INSPECT_LIMITS, workers=1)
        deadline = time.monotonic() + 30
        while shared_decodes.peek_decoded(before, SHARED_DECODE_SIDE) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert shared_decodes.peek_decoded(before, SHARED_DECODE_SIDE) is not None
        gradient(800, 600, 7).save(path, quality=90)  # edited between discovery and ingest
        (row,) = inspect_batch(
            _found([path]), [], CaptionIndex(Boundary.of([tmp_path])), INSPECT_LIMITS, workers=1, progress=lambda: None
        )
        now = path.read_bytes()
        assert row["file_id"] == file_id_of(now) != before
        assert row["phash"] == perceptual_hash(decode_rgb(now, 10**9, min_side=SHARED_DECODE_SIDE))
        kept = take_decoded(row["file_id"], SHARED_DECODE_SIDE)
        assert kept.tobytes() == decode_rgb(now, 10**9, min_side=SHARED_DECODE_SIDE).tobytes()


def test_a_damaged_image_decoded_ahead_is_still_quarantined_with_its_reason(tmp_path):
    good, bad = tmp_path / "good.jpg", tmp_path / "truncated.jpg"
    gradient(640, 480, 1).save(good, quality=90)
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with sharing_decodes():
        decode_images_ahead(_found([good, bad]), Boundary.of([tmp_path]), INSPECT_LIMITS, workers=2)
        rows = inspect_batch(
            _found([good, bad]),
            [],
            CaptionIndex(Boundary.of([tmp_path])),
            INSPECT_LIMITS,
            workers=2,
            progress=lambda: None,
        )
    status = {r["path"]: (r["status"], r["reason"]) for r in rows}
    assert status[str(good)] == ("ok", None)
    assert status[str(bad)][0] == "quarantined" and "truncated or corrupt image data" in status[str(bad)][1]


def test_decodes_are_kept_within_a_budget_and_only_inside_a_sharing_scope():
    image = Image.new("RGB", (100, 100))  # 30,000 bytes
    keep_decoded("outside", 224, image)
    with sharing_decodes(budget_bytes=50_000):
        assert take_decoded("outside", 224) is None, "nothing is kept outside a scope"
        keep_decoded("a", 224, image)
        keep_decoded("b", 224, image)  # over budget: not kept
        assert take_decoded("b", 224) is None
        assert take_decoded("a", 448) is None, "another side is another decode"
        assert take_decoded("a", 224) is image and take_decoded("a", 224) is None, "taken once"
        keep_decoded("b", 224, image)  # the budget was freed
        assert take_decoded("b", 224) is image
        keep_decoded("c", 224, image)
        drop_kept_decodes()  # the run's batches are embedded: what is left goes, and its budget comes back
        assert take_decoded("c", 224) is None
        keep_decoded("d", 224, image)
        assert take_decoded("d", 224) is image
    assert take_decoded("b", 224) is None


def test_decoding_ahead_reads_nothing_outside_the_sources(tmp_path):
    source, outside = tmp_path / "src", tmp_path / "outside"
    source.mkdir()
    outside.mkdir()
    gradient(320, 240, 4).save(outside / "secret.jpg", quality=90)
    (source / "link.jpg").symlink_to(outside / "secret.jpg")
    gradient(320, 240, 5).save(source / "after.jpg", quality=90)
    secret, after = (file_id_of(p.read_bytes()) for p in (outside / "secret.jpg", source / "after.jpg"))
    with sharing_decodes():
        # One worker, in order: once the file after the link is kept, the link has had its turn.
        decode_images_ahead(
            _found([source / "link.jpg", source / "after.jpg"]), Boundary.of([source]), INSPECT_LIMITS, workers=1
        )
        deadline = time.monotonic() + 30
        while shared_decodes.peek_decoded(after, SHARED_DECODE_SIDE) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert shared_decodes.peek_decoded(after, SHARED_DECODE_SIDE) is not None
        assert shared_decodes.peek_decoded(secret, SHARED_DECODE_SIDE) is None


def test_decoding_ahead_stops_when_the_budget_is_full_so_no_image_is_decoded_twice(tmp_path, monkeypatch):
    """A batch larger than the budget (10,000 photos fill it within a few hundred): ahead of ingest
    only what can be kept is decoded, and ingest decodes the rest once."""
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"p{i}.jpg")
        gradient(640, 480, i).save(paths[-1], quality=85)  # kept at 320x240: 230,400 bytes each
    decodes = []
    real_decode = ingest_inspect.decode_rgb
    monkeypatch.setattr(ingest_inspect, "decode_rgb", lambda *a, **k: decodes.append(a) or real_decode(*a, **k))
    with sharing_decodes(budget_bytes=500_000):  # room for two
        decode_images_ahead(_found(paths), Boundary.of([tmp_path]), INSPECT_LIMITS, workers=1)
        assert len(shared_decodes._ahead) == 500_000 // (224 * 224 * 3) + 1, "queued: what the budget can hold"
        deadline = time.monotonic() + 60
        while not all(f.done() for f in shared_decodes._ahead.values()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(decodes) == 3, "two kept, the third refused, the rest left to ingest"
        rows = inspect_batch(
            _found(paths), [], CaptionIndex(Boundary.of([tmp_path])), INSPECT_LIMITS, workers=2, progress=lambda: None
        )
    assert all(r["status"] == "ok" and r["phash"] is not None for r in rows)
    assert len(decodes) == len(paths) + 1, "only the image refused by the budget was decoded twice"
