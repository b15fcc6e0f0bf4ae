"""Duplicates: perceptual hashes that survive resizing, recompression, cropping and colour shifts;
exact, near and semantic groups measured on generated copies; comparisons that follow new and
deleted files; search that collapses duplicates; the CLI and the HTTP API."""

import json
import os
import re
import shutil

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from mm_assets.cli import main
from mm_assets.config import EncoderConfig, Settings
from mm_assets.config_loading import load_settings
from mm_assets.config_sections import DuplicatesConfig
from mm_assets.duplicates import (
    chunk_paths,
    hash_pairs,
    list_duplicates,
    near_pairs,
    pair_groups,
    read_pairs,
)
from mm_assets.evaluation.duplicates import TRANSFORMS, copy_detection_figures, original_image, write_copies
from mm_assets.formats.images import hamming, perceptual_hash
from mm_assets.runs import run_pipeline
from mm_assets.service.app import create_app
from mm_assets.store.close_pairs import PairRule, Rows, close_pairs
from mm_assets.store.segments import open_generation


def test_perceptual_hashes_survive_copies_and_tell_pictures_apart():
    originals = [original_image(seed) for seed in range(30)]
    hashes = [perceptual_hash(im) for im in originals]
    apart = [int(hamming(a, b)) for i, a in enumerate(hashes) for b in hashes[:i]]
    assert min(apart) > DuplicatesConfig().near_bits, "no two different pictures look alike"
    for image, h in zip(originals[:5], hashes):
        for name in ("resized", "recompressed", "colour_shifted"):
            assert hamming(h, perceptual_hash(TRANSFORMS[name](image))) <= 6, name


def test_groups_are_stars_so_links_do_not_chain():
    # a-b-c-d-e is a chain (each looks like the next): no group holds both ends.
    chain = [("a", "b"), ("b", "c"), ("c", "d"), ("d", "e"), ("x", "y")]
    pairs = pa.table({"a": [a for a, _ in chain], "b": [b for _, b in chain], "link": ["near"] * 5, "score": [1.0] * 5})
    assert pair_groups(pairs) == {"a": "b", "b": "b", "c": "b", "d": "d", "e": "d", "x": "x", "y": "x"}


def test_duplicates_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="near_bits"):
        DuplicatesConfig(near_bits=40)
    with pytest.raises(ValueError, match="duplicates.encoder 'nope' is not configured"):
        Settings(home=tmp_path, duplicates=DuplicatesConfig(encoder="nope"))
    config = tmp_path / "mm_assets.yaml"
    config.write_text("duplicates: {near_bits: 6, semantic_cosine: 0.9}\n")
    assert load_settings(str(config)).duplicates == DuplicatesConfig(near_bits=6, semantic_cosine=0.9)


def _figures(settings: Settings, truth) -> dict[str, dict]:
    pairs = read_pairs(settings.layout.duplicate_pairs)
    con, _ = open_generation(settings.db_path)
    try:
        paths_of = chunk_paths(con, set(pairs.column("a").to_pylist()) | set(pairs.column("b").to_pylist()))
    finally:
        con.close()
    return {row["link"]: row for row in copy_detection_figures(pairs, paths_of, truth)}


def _compared(instance: dg.DagsterInstance) -> int:
    event = instance.get_latest_materialization_event(dg.AssetKey("duplicates"))
    return event.asset_materialization.metadata["compared"].value


@pytest.fixture
def copies(tmp_path, tiny_clip):
    """Six generated photos, each also resized, recompressed, cropped and colour-shifted, and one
    photo's bytes under a second name; the tiny random model's vectors only separate copies that
    are nearly pixel-identical, hence its strict semantic threshold."""
    source = tmp_path / "photos"
    truth = write_copies(source, 6)
    shutil.copy(source / "originals" / "photo_0000.jpg", source / "same_bytes.jpg")
    settings = Settings(
        home=tmp_path / "home",
        sources=(source,),
        encoders=(EncoderConfig("clip", model=str(tiny_clip), batch_size=16),),
        duplicates=DuplicatesConfig(near_bits=10, semantic_cosine=0.99995),
    )
    return settings, truth


def test_copies_are_grouped_measured_followed_and_collapsed_in_search(copies, capsys):
    settings, truth = copies
    with dg.instance_for_test() as instance:
        assert run_pipeline(settings, list(settings.sources), instance=instance).ok
        assert _compared(instance) == 30, "30 pictures (the same bytes under two names are one item)"
        figures = _figures(settings, truth)
        near, semantic, either = figures["near"], figures["semantic"], figures["either"]
        assert near["precision"] == 1.0, "no two different photos grouped"
        assert near["recall resized"] == near["recall recompressed"] == near["recall colour_shifted"] == 1.0
        assert near["recall cropped"] >= 0.5, "10% cropped off each side moves the hash most"
        assert semantic["precision"] == 1.0 and semantic["recall resized"] == semantic["recall recompressed"] == 1.0
        assert either["precision"] == 1.0 and either["recall resized"] == 1.0

        # A copy deleted: its pairs go; a new one arrives: only it is compared.
        photos = settings.sources[0]
        (photos / "resized" / "photo_0001.jpg").unlink()
        original = original_image(1)
        original.resize((400, 300)).save(photos / "photo_0001_small.jpg", quality=80)
        assert run_pipeline(settings, list(settings.sources), instance=instance).ok
        assert _compared(instance) == 1

    con, _ = open_generation(settings.db_path)
    try:
        groups = list_duplicates(con, settings.layout.duplicate_pairs)
    finally:
        con.close()
    by_path = {m["path"]: g for g in groups for m in g["members"]}
    family = by_path[str(photos / "originals" / "photo_0001.jpg")]
    paths = {m["path"] for m in family["members"]}
    assert str(photos / "photo_0001_small.jpg") in paths and str(photos / "resized" / "photo_0001.jpg") not in paths
    assert {p.rsplit("/", 1)[-1] for p in paths} == {"photo_0001.jpg", "photo_0001_small.jpg"}
    assert family["links"] == ["near", "semantic"] or family["links"] == ["near"]
    # The same bytes under two names: one served item, its other path shown.
    zero = by_path.get(str(photos / "originals" / "photo_0000.jpg")) or by_path[str(photos / "same_bytes.jpg")]
    assert "exact" in zero["links"]
    assert [m["also_at"] for m in zero["members"] if m.get("also_at")] in (
        [[str(photos / "same_bytes.jpg")]],
        [[str(photos / "originals" / "photo_0000.jpg")]],
    )

    config = settings.home / "mm_assets.yaml"
    config.write_text(
        f"home: {settings.home}\nsources: [{photos}]\n"
        f"encoders:\n  - {{name: clip, model: {settings.encoders[0].model}}}\n"
        "duplicates: {near_bits: 10, semantic_cosine: 0.99995}\n"
    )
    query = str(photos / "originals" / "photo_0002.jpg")
    capsys.readouterr()
    assert main(["--config", str(config), "search", "--image", query, "--k", "5", "--json"]) == 0
    plain = [h["path"] for h in json.loads(capsys.readouterr().out)]
    assert sum("photo_0002" in p for p in plain) >= 3, "without --dedup the copies crowd the top 5"
    assert main(["--config", str(config), "search", "--image", query, "--k", "5", "--dedup", "--json"]) == 0
    deduped = [h["path"] for h in json.loads(capsys.readouterr().out)]
    assert deduped[0] == plain[0] and sum("photo_0002" in p for p in deduped) == 1 and len(deduped) == 5

    assert main(["--config", str(config), "duplicates", "--link", "exact", "--json"]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert len(exact) == 1 and "exact" in exact[0]["links"]
    assert main(["--config", str(config), "duplicates"]) == 0
    assert "items, near" in capsys.readouterr().out

    api = TestClient(create_app(settings))
    assert len(api.get("/api/duplicates", params={"link": "near"}).json()) == len(
        [g for g in groups if "near" in g["links"]]
    )
    found = api.get("/api/search", params={"q": "a photo", "k": 30, "dedup": True}).json()
    seen = [h["chunk_id"] for h in found]
    grouped = pair_groups(read_pairs(settings.layout.duplicate_pairs))
    assert len({grouped.get(c, c) for c in seen}) == len(seen), "one hit per group"
    assert np.all(np.diff([h["distance"] for h in found]) >= 0)


def test_many_copies_of_one_picture_make_one_group_with_a_bounded_number_of_links(tmp_path, tiny_clip):
    """Thirty copies of one photo: every pair is a duplicate (435 pairs of each kind), but each copy
    keeps only its closest ``links_per_chunk``, ties to the same few, so they still group as one;
    at 10,000 copies the uncapped pairs ran a 24 GB machine out of memory."""
    source = tmp_path / "photos"
    source.mkdir()
    photo = original_image(0)
    for i in range(30):
        photo.save(source / f"copy_{i:02d}.jpg", quality=60 + i)  # other bytes, the same picture
    original_image(1).save(source / "other.jpg")
    settings = Settings(
        home=tmp_path / "home",
        sources=(source,),
        encoders=(EncoderConfig("clip", model=str(tiny_clip), batch_size=16),),
        duplicates=DuplicatesConfig(semantic_cosine=0.9999, links_per_chunk=3),
    )
    with dg.instance_for_test() as instance:
        assert run_pipeline(settings, [source], instance=instance).ok
    pairs = read_pairs(settings.layout.duplicate_pairs)
    links = pairs.column("link").to_pylist()
    assert 29 <= links.count("near") <= 30 * 3 and links.count("semantic") <= 30 * 3
    con, _ = open_generation(settings.db_path)
    try:
        groups = list_duplicates(con, settings.layout.duplicate_pairs)
    finally:
        con.close()
    assert [sorted(m["path"].rsplit("/", 1)[-1] for m in g["members"]) for g in groups] == [
        [f"copy_{i:02d}.jpg" for i in range(30)]
    ]


def test_a_files_own_chunks_never_take_the_links_of_a_copy_in_another_file():
    """A static shot: a video's frames hash alike. With one link per chunk, each frame still finds
    the copy in the other file rather than its own siblings."""

    def hashed(rows):
        return pa.table(
            {
                "chunk_id": [c for c, _, _ in rows],
                "phash": pa.array([h for _, h, _ in rows], pa.int64()),
                "file": pa.array([f for _, _, f in rows], pa.uint64()),
            }
        )

    frames = [(f"frame{i}", 0b1111, 1) for i in range(5)]  # one file, identical hashes
    copy = ("still", 0b1110, 2)  # another file, one bit apart
    found = near_pairs(hashed(frames), hashed(sorted([*frames, copy])), max_bits=4, most=1)
    assert sorted(zip(found["x"].to_pylist(), found["y"].to_pylist())) == [(f"frame{i}", "still") for i in range(5)]


def test_hash_pairs_stand_only_where_the_vectors_agree_or_cannot_be_asked():
    """Low-detail pictures share hashes with unrelated ones: a near pair is kept when its vectors
    agree, dropped when they do not, and kept when one end has no vector to ask."""
    # a, b, c: one hash, three files; a's and b's vectors agree, c's do not.
    vectors = np.array([[1.0, 0.0], [0.99, 0.141], [0.0, 1.0]], np.float32)
    same_hash = np.full(3, 0b1111, np.int64)
    rows = Rows(vectors, np.array([1, 2, 3], np.uint64), np.arange(3), same_hash, np.ones(3, bool))
    [(q, r, bits)], _ = close_pairs(rows, np.arange(3), [PairRule(0.9, most=4, max_bits=2)])
    assert sorted(zip(q.tolist(), r.tolist())) == [(0, 1), (1, 0)] and bits.tolist() == [0, 0]
    # z: the same hash and no vector: paired by hashes alone, with each of them.
    hashed = pa.table(
        {
            "chunk_id": ["a", "b", "c", "z"],
            "phash": pa.array([0b1111] * 4, pa.int64()),
            "file": pa.array([1, 2, 3, 4], pa.uint64()),
        }
    )
    found = hash_pairs(hashed, hashed, pa.array(["a", "b", "c"]), DuplicatesConfig(near_bits=2))
    assert sorted(zip(found["x"].to_pylist(), found["y"].to_pylist())) == [
        ("a", "z"),
        ("b", "z"),
        ("c", "z"),
        ("z", "a"),
        ("z", "b"),
        ("z", "c"),
    ]


def test_a_run_returns_before_the_duplicates_and_one_long_file_compares_nothing(tmp_path, tiny_clip, capsys):
    """A log dump (one line of words: hundreds of windows of one file) with --no-wait-duplicates: the
    summary comes while the duplicates are still to compare, a background process compares them, and
    since every window is of the same file, it computes no cosine at all."""
    source = tmp_path / "logs"
    source.mkdir()
    (source / "dump.txt").write_text(" ".join(f"event{i % 97} user{i % 13} status{i % 5}" for i in range(3000)))
    home = tmp_path / "home"
    config = tmp_path / "mm_assets.yaml"
    config.write_text(f"home: {home}\nsources: [{source}]\nencoders:\n  - {{name: clip, model: {tiny_clip}}}\n")
    assert main(["--config", str(config), "run", "--no-wait-duplicates"]) == 0
    out = capsys.readouterr().out
    assert "vector tables updated" in out and "duplicates: not compared yet (not waited for)" in out
    pid = int(re.search(r"comparing in the background \(pid (\d+)", out).group(1))
    assert not (home / "duplicate_pairs.parquet").exists(), "the summary came first"
    assert os.waitpid(pid, 0)[1] == 0, (home / "logs" / "duplicates.log").read_text()
    assert "0 duplicate groups" in (home / "logs" / "duplicates.log").read_text()

    with dg.DagsterInstance.get() as instance:
        meta = instance.get_latest_materialization_event(dg.AssetKey("duplicates")).asset_materialization.metadata
    assert meta["compared"].value > 200, "every window was compared..."
    assert meta["comparisons"].value == 0, "...with no other file's: nothing computed"
    assert main(["--config", str(config), "duplicates"]) == 0
    assert "no duplicates found" in capsys.readouterr().out
