import os

import numpy as np
import pytest
from PIL import Image

from mm_assets.ingest import BadFile
from mm_assets.ingest.discover import FoundFile, Rejected, walk_sources
from mm_assets.ingest.files import inspect_file
from mm_assets.ingest.images import decode_rgb
from mm_assets.ingest.text import decode_text
from mm_assets_tests.corpus import BLUE, RED

LIMITS = dict(max_image_pixels=89_478_485, max_file_bytes=1 << 30)


def inspect(path) -> dict:
    st = os.stat(path)
    return inspect_file(FoundFile(str(path), st.st_size, st.st_mtime_ns), **LIMITS)


def rgb(path, min_side=None) -> Image.Image:
    return decode_rgb(open(path, "rb").read(), LIMITS["max_image_pixels"], min_side=min_side)


def test_every_supported_image_format_is_ingested_by_content(source):
    rows = {p.name: inspect(p) for p in (source / "images").iterdir()}
    assert all(r["status"] == "ok" and r["modality"] == "image" for r in rows.values()), rows
    assert rows["really_png.jpg"]["format"] == "PNG"  # content decides, not the extension
    assert {r["format"] for r in rows.values()} >= {"JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"}


def test_identical_bytes_get_the_same_file_id(source, tmp_path):
    copy = tmp_path / "copy.jpg"
    copy.write_bytes((source / "images" / "photo.jpg").read_bytes())
    assert inspect(copy)["file_id"] == inspect(source / "images" / "photo.jpg")["file_id"]


def test_exif_orientation_is_applied(source):
    # stored 120x60 with orientation 6 (rotate 90°): displayed 60x120
    assert rgb(source / "images" / "rotated.jpg").size == (60, 120)


def test_awkward_modes_become_correct_rgb(source):
    images = source / "images"
    cmyk = np.asarray(rgb(images / "cmyk.jpg")).reshape(-1, 3).mean(0)
    assert cmyk[0] > 200 and cmyk[1] < 60 and cmyk[2] < 60  # CMYK (0,255,255,0) is red
    half = np.asarray(rgb(images / "half_transparent.png"))
    assert tuple(half[10, 5]) == BLUE and tuple(half[10, 50]) == (255, 255, 255)  # alpha over white, not black
    assert tuple(np.asarray(rgb(images / "anim.gif"))[0, 0]) == RED  # first frame
    gray16 = np.asarray(rgb(images / "gray16.png"))
    assert abs(int(gray16[0, 0, 0]) - round(40000 / 65535 * 255)) <= 1  # scaled, not clipped to 255
    assert rgb(images / "gray.bmp").mode == "RGB"


def test_jpeg_draft_decode_still_covers_the_requested_size(source):
    small = rgb(source / "images" / "photo.jpg", min_side=64)
    assert min(small.size) >= 64 and small.size[0] < 640


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Snow über alles".encode("utf-16"), "Snow über alles"),
        ("Snow über alles".encode("utf-8-sig"), "Snow über alles"),
        ("Le café crème à Noël".encode("latin-1"), "Le café crème à Noël"),
        (b"plain ascii\n", "plain ascii\n"),
    ],
)
def test_text_encodings_are_detected(raw, expected):
    assert decode_text(raw)[0] == expected


def test_binary_data_is_not_text():
    with pytest.raises(BadFile, match="binary"):
        decode_text(bytes(range(256)))


def test_each_bad_file_is_quarantined_with_its_reason(source, bad_reasons):
    results = {}
    for entry in walk_sources([source / "bad"]):
        name = os.path.basename(entry.path)
        results[name] = entry.reason if isinstance(entry, Rejected) else inspect_file(entry, **LIMITS)["reason"]
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
    assert inspect_file(gone, **LIMITS)["reason"] == "file vanished before it could be read"


def test_a_configured_pixel_limit_applies(source):
    path = source / "images" / "photo.jpg"
    st = os.stat(path)
    row = inspect_file(FoundFile(str(path), st.st_size, st.st_mtime_ns), max_image_pixels=1000, max_file_bytes=1 << 30)
    assert "decompression bomb" in row["reason"]


def test_a_file_edited_after_ingest_is_not_read_as_its_old_self(tmp_path):
    from mm_assets.ingest.reading import file_id_of, read_ingested_file

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

    monkeypatch.setattr("mm_assets.ingest.files.decode_rgb", broken_decoder)
    row = inspect(source / "images" / "photo.jpg")
    assert row["status"] == "quarantined" and row["reason"] == "unreadable (IndexError: list index out of range)"
