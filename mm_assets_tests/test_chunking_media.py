"""mm_assets/chunking/recordings.py and by_kind.py: video frames with subtitles, audio windows, images and tiles."""

from __future__ import annotations

import pytest

from mm_assets.chunking.by_kind import chunk_file, chunk_image
from mm_assets.chunking.recordings import chunk_audio, chunk_video
from mm_assets_tests import media_corpus
from mm_assets_tests.helpers import by_role, chunk_limits, inspect, params_for


def test_images_are_whole_plus_optional_tiles():
    assert [r["bbox"] for r in chunk_image("f", {"tiles": 0}).rows] == [[0.0, 0.0, 1.0, 1.0]]
    tiled = chunk_image("f", {"tiles": 2}).rows
    assert len(tiled) == 5 and tiled[4]["bbox"] == [0.5, 0.5, 1.0, 1.0]
    assert len({r["chunk_id"] for r in tiled}) == 5


def test_video_frames_by_scene_and_interval_with_subtitles(chunker, params, tiny_clip, tmp_path):
    video = tmp_path / "film.mp4"
    video.write_bytes(media_corpus.video_bytes())
    (tmp_path / "film.vtt").write_text(media_corpus.VIDEO_SUBTITLES)
    row = inspect(video)
    assert row["status"] == "ok" and row["duration"] == pytest.approx(6.0) and (row["width"], row["height"]) == (64, 48)

    # defaults: a frame every 5 s, plus one at each cut (the scenes change at 2 s and 4 s)
    rows = chunk_file(row, chunker, params, **chunk_limits(tmp_path)).rows
    frames = by_role(rows, "frame")
    assert [(f["t_start"], f["t_end"]) for f in frames] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
    assert all(f["modality"] == "image" and f["media"] for f in frames)
    assert all(isinstance(f["phash"], int) for f in frames), "each frame has its perceptual hash"
    (subtitle,) = by_role(rows, "subtitle")
    assert (subtitle["t_start"], subtitle["t_end"]) == (0.5, 5.9) and "turns green" in subtitle["text"]
    assert [r["role"] for r in rows] == ["frame", "subtitle", "frame", "frame"], "in time order"

    # interval only: every 5 s, the cuts are missed
    interval = params_for(tiny_clip, tmp_path / "h", video_scene_threshold=None)["video"]
    frames = by_role(chunk_video("v", video.read_bytes(), 6.0, None, chunker, interval).rows, "frame")
    assert [f["t_start"] for f in frames] == [0.0, 5.0]

    # a frame limit that cuts the video short is reported
    capped = params_for(tiny_clip, tmp_path / "h", video_max_frames=2)["video"]
    short = chunk_video("v", video.read_bytes(), 6.0, None, chunker, capped)
    assert len(by_role(short.rows, "frame")) == 2 and "video_max_frames = 2" in short.problems[0]

    # an edited subtitle file changes the subtitle chunks' ids, not the frames'
    (tmp_path / "film.vtt").write_text(media_corpus.VIDEO_SUBTITLES.replace("Blue", "Dark blue"))
    again = chunk_file(row, chunker, params, **chunk_limits(tmp_path)).rows
    assert by_role(again, "subtitle")[0]["chunk_id"] != subtitle["chunk_id"]
    assert [f["chunk_id"] for f in by_role(again, "frame")] == [f["chunk_id"] for f in by_role(rows, "frame")]


def test_audio_windows_with_timestamps(params):
    assert [(r["t_start"], r["t_end"]) for r in chunk_audio("a", 25.0, params["audio"]).rows] == [
        (0.0, 10.0),
        (8.0, 18.0),
        (16.0, 25.0),
    ]
    (short,) = chunk_audio("b", 3.0, params["audio"]).rows
    assert (short["modality"], short["t_start"], short["t_end"]) == ("audio", 0.0, 3.0)


@pytest.mark.parametrize("ext, fmt, codec", [(".webm", "webm", "libvpx"), (".mov", "mov", "mpeg4")])
def test_video_containers_are_read(chunker, params, tmp_path, ext, fmt, codec):
    path = tmp_path / f"film{ext}"
    path.write_bytes(media_corpus.video_bytes(fmt, codec))
    row = inspect(path)
    assert (row["status"], row["kind"], row["duration"]) == ("ok", "video", 6.0)
    frames = by_role(chunk_file(row, chunker, params, **chunk_limits(tmp_path)).rows, "frame")
    assert [f["t_start"] for f in frames] == [0.0, 2.0, 4.0]
