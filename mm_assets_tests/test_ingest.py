"""mm_assets/ingest: discovery, inspection of each file (type by content, hash), quarantine with a reason."""

import os

import pytest

from mm_assets.formats import BadFile
from mm_assets.ingest.discover import FoundFile, Rejected, walk_sources
from mm_assets.ingest.inspect import inspect_file
from mm_assets_tests import media_corpus
from mm_assets_tests.helpers import INSPECT_LIMITS as LIMITS
from mm_assets_tests.helpers import inspect


def test_every_supported_image_format_is_ingested_by_content(source):
    rows = {p.name: inspect(p) for p in (source / "images").iterdir()}
    assert all(r["status"] == "ok" and r["kind"] == "image" for r in rows.values()), rows
    assert rows["really_png.jpg"]["format"] == "PNG"  # content decides, not the extension
    assert {r["format"] for r in rows.values()} >= {"JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"}


def test_identical_bytes_get_the_same_file_id(source, tmp_path):
    copy = tmp_path / "copy.jpg"
    copy.write_bytes((source / "images" / "photo.jpg").read_bytes())
    assert inspect(copy)["file_id"] == inspect(source / "images" / "photo.jpg")["file_id"]


def test_each_bad_file_is_quarantined_with_its_reason(source, bad_reasons):
    results = {}
    for entry in walk_sources([source / "bad"]):
        name = os.path.basename(entry.path)
        results[name] = entry.reason if isinstance(entry, Rejected) else inspect_file(entry, LIMITS)["reason"]
    assert set(results) == set(bad_reasons)
    for name, fragment in bad_reasons.items():
        assert results[name] and fragment in results[name], (name, results[name])


def test_symlinks_inside_the_sources_are_followed(source):
    (source / "link.jpg").symlink_to(source / "images" / "photo.jpg")
    found = {os.path.basename(e.path): e for e in walk_sources([source])}
    assert isinstance(found["link.jpg"], FoundFile)


def test_files_with_unsupported_extensions_are_ignored(source):
    (source / "notes.docx").write_bytes(b"PK\x03\x04")
    assert not any(e.path.endswith(".docx") for e in walk_sources([source]))


def test_a_file_that_vanishes_after_discovery_is_quarantined(tmp_path):
    gone = FoundFile(str(tmp_path / "gone.jpg"), 10, 0)
    assert inspect_file(gone, LIMITS)["reason"] == "file vanished before it could be read"


def test_a_configured_pixel_limit_applies(source):
    path = source / "images" / "photo.jpg"
    row = inspect(path, max_image_pixels=1000)
    assert "decompression bomb" in row["reason"]


def test_a_file_edited_after_ingest_is_not_read_as_its_old_self(tmp_path):
    from mm_assets.formats.reading import file_id_of, read_ingested_file

    path = tmp_path / "note.txt"
    path.write_text("first version")
    file_id = file_id_of(path.read_bytes())
    assert read_ingested_file(str(path), file_id) == b"first version"
    path.write_text("second version")
    with pytest.raises(BadFile, match="changed since it was ingested"):
        read_ingested_file(str(path), file_id)


def test_an_unexpected_decoder_error_quarantines_only_that_file(source, monkeypatch):
    def broken_decoder(*args, **kwargs):
        raise IndexError("list index out of range")

    monkeypatch.setattr("mm_assets.ingest.inspect.decode_rgb", broken_decoder)
    row = inspect(source / "images" / "photo.jpg")
    assert row["status"] == "quarantined" and row["reason"] == "unreadable (IndexError: list index out of range)"


def test_broken_documents_videos_and_audio_are_quarantined(tmp_path):
    reasons = media_corpus.write_broken_media(tmp_path)
    for name, fragment in reasons.items():
        row = inspect(tmp_path / name)
        assert row["status"] == "quarantined", name
        assert fragment in row["reason"], (name, row["reason"])


@pytest.mark.parametrize("ext, fmt", [(".wav", "wav"), (".flac", "flac"), (".mp3", "mp3"), (".ogg", "ogg")])
def test_audio_formats_are_read(tmp_path, ext, fmt):
    path = tmp_path / f"clip{ext}"
    path.write_bytes(media_corpus.audio_bytes(3.0, fmt))
    row = inspect(path)
    assert (row["status"], row["kind"]) == ("ok", "audio") and row["duration"] == pytest.approx(3.0, abs=0.05)


def test_a_wav_written_by_a_streaming_muxer_is_read(tmp_path):
    """FFmpeg writing to a pipe cannot know the size: the RIFF header says 0xFFFFFFFF."""
    data = bytearray(media_corpus.audio_bytes(3.0))
    data[4:8] = b"\xff\xff\xff\xff"
    (tmp_path / "streamed.wav").write_bytes(bytes(data))
    row = inspect(tmp_path / "streamed.wav")
    assert (row["status"], row["kind"]) == ("ok", "audio") and row["duration"] == pytest.approx(3.0, abs=0.05)
    data[4:8] = (len(data) * 2).to_bytes(4, "little")  # a real size that the file does not hold
    (tmp_path / "cut.wav").write_bytes(bytes(data))
    assert "truncated audio" in inspect(tmp_path / "cut.wav")["reason"]


def test_video_frames_larger_than_the_pixel_limit_are_quarantined(tmp_path):
    """The same limit as an image file: each frame would be decoded at that size."""
    (tmp_path / "film.mp4").write_bytes(media_corpus.video_bytes())  # 64x48 frames
    assert inspect(tmp_path / "film.mp4", max_image_pixels=64 * 48)["status"] == "ok"
    row = inspect(tmp_path / "film.mp4", max_image_pixels=64 * 48 - 1)
    assert row["status"] == "quarantined" and "video frames of 64x48 exceed the limit of 3,071 pixels" in row["reason"]


def test_recordings_longer_than_the_limit_and_pdfs_with_too_many_pages_are_quarantined(tmp_path):
    (tmp_path / "talk.wav").write_bytes(media_corpus.audio_bytes(25.0))
    row = inspect(tmp_path / "talk.wav", max_media_seconds=10)
    assert row["status"] == "quarantined" and "more than max_media_seconds = 10" in row["reason"]
    assert inspect(tmp_path / "talk.wav", max_media_seconds=30)["status"] == "ok"
    (tmp_path / "survey.pdf").write_bytes(media_corpus.pdf_bytes())  # two pages
    row = inspect(tmp_path / "survey.pdf", max_pdf_pages=1)
    assert row["status"] == "quarantined" and "PDF of 2 pages, more than max_pdf_pages = 1" in row["reason"]
