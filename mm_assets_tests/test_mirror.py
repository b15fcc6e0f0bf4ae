"""The index mirrors the source folders: deletions, edits, moves (and moving back), and changes to the
files a document uses (linked images, subtitles, caption sidecars and manifests) reach search at the
next sensor tick or `mm-assets run`, and cost only what changed."""

import json
import os
import shutil
from dataclasses import replace

import dagster as dg
import pytest

from mm_assets.cli import main
from mm_assets.definitions import build_definitions
from mm_assets.search.query import search
from mm_assets_tests.corpus import gradient
from mm_assets_tests.helpers import db_rows, run_requested, sensor_tick
from mm_assets_tests.media_corpus import VIDEO_SUBTITLES, video_bytes, write_markdown_with_images


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def hit_paths(settings, **query) -> list[str]:
    """Paths of every hit (k covers the whole corpus), nearest first."""
    return [h.path for h in search(settings.db_path, k=1000, **query)]


def sync(defs, instance) -> dict:
    """A sensor tick and the run it requests: the metadata of raw_files and the embeddings."""
    result = sensor_tick(defs, instance)
    assert isinstance(result, dg.SensorResult), result
    return run_requested(defs, instance, result)


def test_deleted_files_are_gone_from_search_and_quarantine(settings, bad_reasons, instance, tmp_path):
    src = settings.sources[0]
    defs = build_definitions(settings)
    sync(defs, instance)
    long_text = (src / "texts" / "long.txt").read_text()
    photo_copy = shutil.copy(src / "images" / "photo.jpg", tmp_path / "query.jpg")
    assert hit_paths(settings, text=long_text)[0] == str(src / "texts" / "long.txt")
    assert hit_paths(settings, image=photo_copy)[0] == str(src / "images" / "photo.jpg")
    quarantined = {p for (p,) in db_rows(settings, "SELECT path FROM quarantine")}
    bad = next(iter(sorted(quarantined)))

    for path in (src / "texts" / "long.txt", src / "images" / "photo.jpg", bad):
        os.remove(path)
    meta = sync(defs, instance)
    assert meta["files_deleted"] == 3 and meta["files_added"] == 0
    assert meta["embedded"] == 0 and meta["model_loaded"] is False, "a deletion embeds nothing, loads no model"

    assert str(src / "texts" / "long.txt") not in hit_paths(settings, text=long_text)
    assert str(src / "images" / "photo.jpg") not in hit_paths(settings, image=photo_copy)
    assert bad not in {p for (p,) in db_rows(settings, "SELECT path FROM quarantine")}
    assert len(db_rows(settings, "SELECT path FROM quarantine")) == len(quarantined) - 1
    # the shards keep the history: the tombstones are rows of the batch that saw the deletions
    tombstones = db_rows(settings, "SELECT path, file_id FROM file_versions WHERE status = 'deleted'")
    assert {p for p, _ in tombstones} == {str(src / "texts" / "long.txt"), str(src / "images" / "photo.jpg"), bad}
    assert all(file_id for p, file_id in tombstones if p != bad), "a tombstone names the content it removed"
    assert isinstance(sensor_tick(defs, instance), dg.SkipReason), "a deletion is reported once"


def test_a_moved_file_shows_its_new_path_and_its_old_one_after_moving_back(settings, instance, tmp_path):
    src, other = settings.sources[0], tmp_path / "other"
    other.mkdir()
    settings = replace(settings, sources=(src, other))
    defs = build_definitions(settings)
    sync(defs, instance)
    query = shutil.copy(src / "images" / "photo.jpg", tmp_path / "query.jpg")
    home, away = src / "images" / "photo.jpg", other / "photo.jpg"

    os.rename(home, away)  # between source folders
    os.rename(src / "texts" / "guide.md", src / "texts" / "renamed.md")
    meta = sync(defs, instance)
    assert (meta["files_moved"], meta["files_added"], meta["files_deleted"]) == (2, 0, 0)
    assert meta["embedded"] == 0 and not meta["model_loaded"], "moves and renames cost no embedding"
    paths = hit_paths(settings, image=query)
    assert paths[0] == str(away) and str(home) not in paths
    assert str(src / "texts" / "guide.md") not in {p for (p,) in db_rows(settings, "SELECT path FROM files")}

    os.rename(away, home)  # back again: mtime and size unchanged, still a change of place
    meta = sync(defs, instance)
    assert meta["files_moved"] == 1 and meta["embedded"] == 0
    paths = hit_paths(settings, image=query)
    assert paths[0] == str(home) and str(away) not in paths


def test_an_edited_file_replaces_its_content_and_a_fixed_file_leaves_quarantine(settings, instance, tmp_path):
    src = settings.sources[0]
    broken = src / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    defs = build_definitions(settings)
    sync(defs, instance)
    assert [p for (p,) in db_rows(settings, "SELECT path FROM quarantine")] == [str(broken)]
    old_text = (src / "texts" / "long.txt").read_text()

    (src / "texts" / "long.txt").write_text("completely different words about deserts")
    gradient(50, 40, seed=9).save(broken)
    meta = sync(defs, instance)
    assert meta["files_edited"] == 2 and meta["embedded"] == 2
    assert db_rows(settings, "SELECT path FROM quarantine") == []
    assert str(broken) in hit_paths(settings, image=broken)
    texts = [h.text for h in search(settings.db_path, k=1000, text=old_text) if h.path.endswith("long.txt")]
    assert texts == ["completely different words about deserts"], "the old windows are gone"


def test_a_changed_linked_image_re_chunks_the_page_and_embeds_only_the_new_figure(settings, instance, tmp_path):
    page = write_markdown_with_images(settings.sources[0] / "notes")
    boat = page.parent / "img" / "boat.png"
    defs = build_definitions(settings)
    sync(defs, instance)
    old_figure = db_rows(
        settings,
        "SELECT c.chunk_id FROM chunks c JOIN files f USING (file_id) WHERE f.path = ? AND c.text = ?",
        [str(page), "img/boat.png"],
    )
    assert len(old_figure) == 1

    gradient(80, 60, seed=5).save(boat)  # the page itself is untouched
    meta = sync(defs, instance)
    assert (meta["files_edited"], meta["files_dependency"]) == (1, 1)
    # the image file itself and the page's figure of it; the page's text windows keep their vectors
    assert meta["embedded"] == 2
    hits = search(settings.db_path, k=1000, image=boat, modality="image")
    assert {str(boat), str(page)} <= {h.path for h in hits if h.distance < 1e-4}
    assert old_figure[0][0] not in {h.chunk_id for h in hits}, "the old figure is gone from search"


def test_subtitle_and_caption_changes_reach_the_files_that_use_them(settings, instance):
    src = settings.sources[0]
    (src / "film.mp4").write_bytes(video_bytes())
    (src / "film.vtt").write_text(VIDEO_SUBTITLES)
    (src / "images" / "captions.csv").write_text("path,caption\nrotated.jpg,a sideways gradient\n")
    defs = build_definitions(settings)
    sync(defs, instance)
    film = str(src / "film.mp4")
    before = [h.text for h in search(settings.db_path, k=1000, text="x") if h.path == film and h.role == "subtitle"]
    assert before

    (src / "film.vtt").write_text("WEBVTT\n\n00:00.000 --> 00:01.000\nA heron lands on the jetty\n")
    (src / "images" / "captions.csv").write_text("path,caption\nrotated.jpg,a tilted rainbow\n")
    (src / "images" / "photo.txt").write_text("a photo with a new sidecar caption")
    meta = sync(defs, instance)
    assert meta["files_dependency"] == 4  # the video, rotated.jpg, and photo.jpg and photo.webp (one stem)
    subtitles = [h.text for h in search(settings.db_path, k=1000, text="x") if h.path == film and h.role == "subtitle"]
    assert subtitles == ["A heron lands on the jetty"]
    captions = dict(db_rows(settings, "SELECT path, caption FROM files WHERE caption IS NOT NULL"))
    assert captions == {
        str(src / "images" / "rotated.jpg"): "a tilted rainbow",
        str(src / "images" / "photo.jpg"): "a photo with a new sidecar caption",
        str(src / "images" / "photo.webp"): "a photo with a new sidecar caption",
    }
    assert meta["embedded"] == 2, "the new subtitle window and the sidecar as a text file; frames kept"


def test_cli_run_after_deleting_a_file(tmp_path, tiny_clip, source, capsys):
    def cli(*args):
        return main(["--home", str(tmp_path / "home"), "--model", str(tiny_clip), *map(str, args)])

    assert cli("run", source) == 0
    long_text = (source / "texts" / "long.txt").read_text()
    os.remove(source / "texts" / "long.txt")
    capsys.readouterr()
    assert cli("run", source) == 0
    assert "1 deleted" in capsys.readouterr().out
    assert cli("search", long_text, "--k", "100", "--json") == 0
    assert str(source / "texts" / "long.txt") not in {h["path"] for h in json.loads(capsys.readouterr().out)}
