"""mm_assets/formats: images (orientation, modes, draft decoding), text encodings, subtitles, audio."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mm_assets.config import EncoderConfig
from mm_assets.formats import BadFile
from mm_assets.formats.images import decode_rgb
from mm_assets.formats.subtitles import read_subtitles
from mm_assets.formats.text import decode_text
from mm_assets_tests import media_corpus
from mm_assets_tests.corpus import BLUE, RED


def test_subtitles_srt_and_vtt(tmp_path):
    (tmp_path / "a.srt").write_text(
        "1\n00:00:01,000 --> 00:00:02,500\nHello <i>there</i>\n\n2\n00:01:00,000 --> 00:01:01,000\nBye\n"
    )
    (tmp_path / "b.vtt").write_text(media_corpus.VIDEO_SUBTITLES)
    srt = read_subtitles(str(tmp_path / "a.srt")).cues
    assert [(c.start, c.end, c.text) for c in srt] == [(1.0, 2.5, "Hello there"), (60.0, 61.0, "Bye")]
    assert [c.start for c in read_subtitles(str(tmp_path / "b.vtt")).cues] == [0.5, 2.2, 4.1]


def test_audio_is_decoded_a_stretch_at_a_time_with_the_same_result(tmp_path, tiny_clap):
    """A long recording is embedded a few windows at a time (seeking); the samples and vectors match
    a decode of the whole file."""
    from mm_assets.encoders.clap import ClapEncoder
    from mm_assets.encoders.embed import AudioJob, embed_audio
    from mm_assets.formats.audio_video import decode_audio
    from mm_assets.formats.reading import file_id_of

    for fmt in ("wav", "flac", "mp3", "ogg"):  # MP3 and Opus streams start a few ms after zero
        path = tmp_path / f"long.{fmt}"
        path.write_bytes(media_corpus.audio_bytes(25.0, fmt))
        whole = decode_audio(str(path), 48000)
        assert len(whole) == 25 * 48000
        stretch = decode_audio(str(path), 48000, 8.0, 18.0)
        np.testing.assert_allclose(stretch, whole[8 * 48000 : 18 * 48000], atol=1e-6, err_msg=fmt)

    path = tmp_path / "long.wav"
    encoder = ClapEncoder(EncoderConfig(name="clap", model=str(tiny_clap), modalities=("audio",), dtype="float32"))
    spans = ((0.0, 10.0), (8.0, 18.0), (16.0, 25.0))
    ids = ("a", "b", "c")
    file_id = file_id_of(path.read_bytes())

    def vectors(jobs):
        out = {}
        stats = embed_audio(encoder, jobs, lambda i, v: out.update(zip(i, v)), workers=2)
        assert not stats.failures
        return np.stack([out[i] for i in ids])

    one_job = vectors([AudioJob(file_id, str(path), ids, spans)])
    one_per_window = vectors(
        [AudioJob(file_id, str(path), (i,), (s,), verify=n == 0) for n, (i, s) in enumerate(zip(ids, spans))]
    )
    np.testing.assert_allclose(one_per_window, one_job, atol=1e-5)


def rgb(path, min_side=None) -> Image.Image:
    return decode_rgb(open(path, "rb").read(), 89_478_485, min_side=min_side)


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


def test_a_16_bit_image_is_scaled_to_8_bits_without_widening_it_whole():
    import io
    import tracemalloc

    side = 3000
    ramp = np.tile(np.linspace(0, 65535, side, dtype=np.uint16), (side, 1))
    png = io.BytesIO()
    Image.fromarray(ramp).save(png, "PNG")
    tracemalloc.start()
    rgb = decode_rgb(png.getvalue(), 10**8)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pixels = np.asarray(rgb)
    assert pixels[0, 0].tolist() == [0, 0, 0] and pixels[0, -1].tolist() == [255, 255, 255]
    assert abs(int(pixels[0, side // 2, 0]) - 128) <= 1, "scaled, not clipped"
    assert peak < 6 * side * side, f"{peak / side / side:.1f} bytes per pixel in NumPy"


@pytest.mark.parametrize(
    ("valid", "container", "big_endian"),
    [(16, 16, True), (24, 32, True), (36, 40, False), (45, 48, False), (53, 56, False)],
)
def test_pcm_wavs_other_tools_read_are_read_right(tmp_path, valid, container, big_endian):
    """Big-endian (RIFX) and samples in 5-, 6- and 7-byte containers: FFmpeg decodes the first as
    noise and refuses the others."""
    from mm_assets.formats.audio_video import decode_audio, describe_media

    path = tmp_path / "tone.wav"
    path.write_bytes(media_corpus.pcm_wav_bytes(valid, container, big_endian=big_endian))
    assert describe_media(str(path), "audio") == {"duration": 2.0}
    pcm = decode_audio(str(path), 16000)
    reference = 0.5 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)
    assert len(pcm) == 32000 and np.abs(pcm - reference).max() < 1e-3
    window = decode_audio(str(path), 8000, 0.5, 1.0)
    assert len(window) == 4000 and 0.45 < np.abs(window).max() < 0.55
