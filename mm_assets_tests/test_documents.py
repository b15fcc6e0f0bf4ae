"""PDFs, markdown and HTML with images, videos with subtitles, audio: their chunks, places and links."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest
from transformers import AutoTokenizer

from mm_assets.chunking import chunking_params
from mm_assets.chunking.documents import chunk_pdf, chunk_text
from mm_assets.chunking.files import chunk_file
from mm_assets.chunking.media import chunk_audio, chunk_video
from mm_assets.chunking.text import TextChunker, chunk_text_windows, split_sentences
from mm_assets.config import ChunkingConfig, EncoderConfig, Settings
from mm_assets.definitions import build_definitions
from mm_assets.ingest.discover import FoundFile
from mm_assets.ingest.files import inspect_file
from mm_assets.ingest.subtitles import read_subtitles
from mm_assets_tests import media_corpus
from mm_assets_tests.media_corpus import PDF_CAPTIONS


@pytest.fixture(scope="module")
def tokenizer(tiny_clip):
    return AutoTokenizer.from_pretrained(tiny_clip)


def params_for(tiny_clip, tmp_path, **chunking) -> dict:
    settings = Settings(
        home=tmp_path, encoders=(EncoderConfig(name="clip", model=str(tiny_clip)),), chunking=ChunkingConfig(**chunking)
    )
    return chunking_params(settings)


@pytest.fixture
def params(tiny_clip, tmp_path):
    return params_for(tiny_clip, tmp_path)


@pytest.fixture
def chunker(tokenizer, params):
    return TextChunker(tokenizer, params["text"])


def ingested(path) -> dict:
    st = path.stat()
    return inspect_file(FoundFile(str(path), st.st_size, st.st_mtime_ns), max_image_pixels=10**8, max_file_bytes=2**30)


def by_source(rows, source):
    return [r for r in rows if r["source"] == source]


def test_pdf_pages_figures_and_captions(chunker, params):
    rows = chunk_pdf("doc", media_corpus.pdf_bytes(), chunker, params["document"]).rows
    windows, figures, captions = by_source(rows, "window"), by_source(rows, "figure"), by_source(rows, "caption")
    assert {w["page"] for w in windows} == {1, 2} and all(w["section"] == w["page"] for w in windows)
    assert "Harbour survey" in windows[0]["text"] and windows[0]["page"] == 1
    # every text window knows where it is on its page
    for w in windows:
        x0, y0, x1, y1 = w["bbox"]
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    # the two figures of page 2, top one first, each followed by its caption, linked to it
    assert [f["page"] for f in figures] == [2, 2] and [f["modality"] for f in figures] == ["image", "image"]
    assert figures[0]["bbox"][1] < figures[1]["bbox"][1] and all(f["media"] for f in figures)
    assert [c["text"] for c in captions] == list(PDF_CAPTIONS)
    for figure, caption in zip(figures, captions):
        assert caption["linked_chunk_id"] == figure["chunk_id"] and caption["position"] == figure["position"] + 1
        assert caption["bbox"] == figure["bbox"]
    # a figure sits in reading order after the page-2 text above it
    above = [w for w in windows if w["page"] == 2 and w["position"] < figures[0]["position"]]
    assert above and "lighthouse keeper" in above[-1]["text"]
    assert [r["position"] for r in rows] == list(range(len(rows)))


def test_pdf_pages_rendered_when_configured(chunker, tiny_clip, tmp_path):
    params = params_for(tiny_clip, tmp_path, pdf_render_pages=True)
    rows = chunk_pdf("doc", media_corpus.pdf_bytes(), chunker, params["document"]).rows
    pages = by_source(rows, "page")
    assert [p["page"] for p in pages] == [1, 2] and all(p["media"] and p["modality"] == "image" for p in pages)
    plain = chunk_pdf("doc", media_corpus.pdf_bytes(), chunker, params_for(tiny_clip, tmp_path)["document"]).rows
    assert {r["chunk_id"] for r in rows}.isdisjoint(r["chunk_id"] for r in plain), "a parameter is part of the id"


def test_markdown_images_link_to_their_section(chunker, params, tmp_path):
    doc = media_corpus.write_markdown_with_images(tmp_path / "notes")
    found = chunk_file(ingested(doc), chunker, params, max_pixels=10**8, max_bytes=2**30)
    rows = found.rows
    figures = by_source(rows, "figure")
    assert [f["text"] for f in figures] == ["img/boat.png", "img/chart.png"] and all(f["media"] for f in figures)
    boat, chart = figures
    # the boat belongs to the first section, the chart to "Weather", as their surrounding text does
    assert boat["heading"] == "Harbour report" and chart["heading"] == "Harbour report > Weather"
    section_text = {}
    for r in by_source(rows, "window"):
        section_text[r["section"]] = section_text.get(r["section"], "") + r["text"]
    assert "Fishing boats leave at dawn" in section_text[boat["section"]]
    assert "Rain fell all week" in section_text[chart["section"]]
    # alt text and captions are text chunks linked to their image
    described = {(r["source"], r["text"]): r["linked_chunk_id"] for r in rows if r["linked_chunk_id"]}
    assert described == {
        ("alt_text", "An orange fishing boat"): boat["chunk_id"],
        ("caption", "Figure 1: the boat at the pier"): boat["chunk_id"],
        ("alt_text", "Rainfall bars"): chart["chunk_id"],
        ("caption", "Figure 2: weekly rainfall"): chart["chunk_id"],
    }
    # a missing file and a remote URL are reported, and cost nothing else
    assert len(found.problems) == 2 and "missing.png" in found.problems[0] and "no network" in found.problems[1]
    assert {r["text"] for r in by_source(rows, "alt_text") if r["linked_chunk_id"] is None} == {"Gone", "Remote"}

    # the linked image's content is part of the figure's id: replacing it re-embeds that figure only
    (doc.parent / "img" / "boat.png").write_bytes((doc.parent / "img" / "chart.png").read_bytes())
    again = chunk_file(ingested(doc), chunker, params, max_pixels=10**8, max_bytes=2**30).rows
    changed = {r["chunk_id"] for r in rows} ^ {r["chunk_id"] for r in again}
    assert changed == {boat["chunk_id"], by_source(again, "figure")[0]["chunk_id"]}


def test_html_text_sections_and_figure(chunker, tmp_path):
    doc = media_corpus.write_html_with_images(tmp_path / "web")
    rows = chunk_text("page", doc.read_text(), str(doc), chunker).rows
    windows = by_source(rows, "window")
    assert [w["text"] for w in windows] == [
        "Net mending: Nets are mended in winter.",
        "Net mending > Tools: Needles and twine.",
    ]
    assert not any("ignored" in (r["text"] or "") or "p {}" in (r["text"] or "") for r in rows), "no script or style"
    (figure,) = by_source(rows, "figure")
    assert figure["section"] == windows[0]["section"] and figure["heading"] == "Net mending"
    assert {r["text"] for r in rows if r["linked_chunk_id"] == figure["chunk_id"]} == {
        "A purple net",
        "Figure 3: a mended net",
    }


def test_video_frames_by_scene_and_interval_with_subtitles(chunker, params, tiny_clip, tmp_path):
    video = tmp_path / "film.mp4"
    video.write_bytes(media_corpus.video_bytes())
    (tmp_path / "film.vtt").write_text(media_corpus.VIDEO_SUBTITLES)
    row = ingested(video)
    assert row["status"] == "ok" and row["duration"] == pytest.approx(6.0) and (row["width"], row["height"]) == (64, 48)

    # defaults: a frame every 5 s, plus one at each cut (the scenes change at 2 s and 4 s)
    rows = chunk_file(row, chunker, params, max_pixels=10**8, max_bytes=2**30).rows
    frames = by_source(rows, "frame")
    assert [(f["t_start"], f["t_end"]) for f in frames] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
    assert all(f["modality"] == "image" and f["media"] for f in frames)
    (subtitle,) = by_source(rows, "subtitle")
    assert (subtitle["t_start"], subtitle["t_end"]) == (0.5, 5.9) and "turns green" in subtitle["text"]
    assert [r["source"] for r in rows] == ["frame", "subtitle", "frame", "frame"], "in time order"

    # interval only: every 5 s, the cuts are missed
    interval = params_for(tiny_clip, tmp_path / "h", video_scene_threshold=None)["video"]
    frames = by_source(chunk_video("v", video.read_bytes(), 6.0, None, chunker, interval).rows, "frame")
    assert [f["t_start"] for f in frames] == [0.0, 5.0]

    # a frame limit that cuts the video short is reported
    capped = params_for(tiny_clip, tmp_path / "h", video_max_frames=2)["video"]
    short = chunk_video("v", video.read_bytes(), 6.0, None, chunker, capped)
    assert len(by_source(short.rows, "frame")) == 2 and "video_max_frames = 2" in short.problems[0]

    # an edited subtitle file changes the subtitle chunks' ids, not the frames'
    (tmp_path / "film.vtt").write_text(media_corpus.VIDEO_SUBTITLES.replace("Blue", "Dark blue"))
    again = chunk_file(row, chunker, params, max_pixels=10**8, max_bytes=2**30).rows
    assert by_source(again, "subtitle")[0]["chunk_id"] != subtitle["chunk_id"]
    assert [f["chunk_id"] for f in by_source(again, "frame")] == [f["chunk_id"] for f in by_source(rows, "frame")]


def test_subtitles_srt_and_vtt(tmp_path):
    (tmp_path / "a.srt").write_text(
        "1\n00:00:01,000 --> 00:00:02,500\nHello <i>there</i>\n\n2\n00:01:00,000 --> 00:01:01,000\nBye\n"
    )
    (tmp_path / "b.vtt").write_text(media_corpus.VIDEO_SUBTITLES)
    srt = read_subtitles(str(tmp_path / "a.srt")).cues
    assert [(c.start, c.end, c.text) for c in srt] == [(1.0, 2.5, "Hello there"), (60.0, 61.0, "Bye")]
    assert [c.start for c in read_subtitles(str(tmp_path / "b.vtt")).cues] == [0.5, 2.2, 4.1]


def test_audio_windows_with_timestamps(params):
    assert [(r["t_start"], r["t_end"]) for r in chunk_audio("a", 25.0, params["audio"]).rows] == [
        (0.0, 10.0),
        (8.0, 18.0),
        (16.0, 25.0),
    ]
    (short,) = chunk_audio("b", 3.0, params["audio"]).rows
    assert (short["modality"], short["t_start"], short["t_end"]) == ("audio", 0.0, 3.0)


def test_broken_documents_videos_and_audio_are_quarantined(tmp_path):
    reasons = media_corpus.write_broken_media(tmp_path)
    for name, fragment in reasons.items():
        row = ingested(tmp_path / name)
        assert row["status"] == "quarantined", name
        assert fragment in row["reason"], (name, row["reason"])


# --- text chunking strategies ---

TOPICS = "Boats sail at dawn. Boats return at noon. Boats rest at night. Soup needs salt. Soup needs time. Soup is hot."


def test_sentence_windows_end_on_sentence_ends(tokenizer):
    text = " ".join(f"Sentence {i} is about the harbour and its boats." for i in range(12))
    windows = chunk_text_windows(text, tokenizer, max_tokens=77, overlap=8, markdown=False, strategy="sentence")
    assert len(windows) > 2
    for w in windows:
        assert w.text.endswith(".") and w.text[0].isupper() and w.n_tokens <= 77
    assert "".join(text[w.char_start : w.char_end] + " " for w in windows).strip() == text, "no overlap, no gaps"


def test_semantic_windows_break_where_the_topic_changes(tokenizer):
    def embed(sentences):  # a stand-in sentence model: one direction per topic
        rows = np.asarray([[1.0, 0.05 * i] if "Boats" in s else [0.05 * i, 1.0] for i, s in enumerate(sentences)])
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    windows = chunk_text_windows(
        TOPICS, tokenizer, max_tokens=77, overlap=8, markdown=False, strategy="semantic", embed_sentences=embed
    )
    # the sentences would fit one window; the topic change splits them
    assert [w.text for w in windows] == [
        "Boats sail at dawn. Boats return at noon. Boats rest at night.",
        "Soup needs salt. Soup needs time. Soup is hot.",
    ]
    sentence = chunk_text_windows(TOPICS, tokenizer, max_tokens=200, overlap=8, markdown=False, strategy="sentence")
    assert [w.text for w in sentence] == [TOPICS]


def test_fixed_strategy_ignores_headings_and_heading_strategy_keeps_them(tokenizer):
    text = "# Guide\n\nBoats.\n\n## Safety\n\nLife jackets."
    fixed = chunk_text_windows(text, tokenizer, max_tokens=77, overlap=8, markdown=True, strategy="fixed")
    heading = chunk_text_windows(text, tokenizer, max_tokens=77, overlap=8, markdown=True, strategy="heading")
    assert [w.text for w in fixed] == [text]
    assert [(w.text, w.section) for w in heading] == [("Guide: Boats.", 0), ("Guide > Safety: Life jackets.", 1)]


def test_sentences_split_at_ends_and_paragraphs():
    text = 'Boats leave at dawn. Is it calm? "Yes." Then 3.5 knots.\n\nNo full stop here\nstill one'
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "Boats leave at dawn.",
        "Is it calm?",
        '"Yes."',
        "Then 3.5 knots.",
        "No full stop here\nstill one",
    ]


def test_each_strategy_versions_the_chunk_ids_and_the_chunks_code_version(tokenizer, tiny_clip, tmp_path):
    def embed(sentences):
        return np.tile([1.0, 0.0], (len(sentences), 1))

    ids, versions = {}, {}
    for strategy in ("fixed", "heading", "sentence", "semantic"):
        settings = Settings(
            home=tmp_path,
            encoders=(EncoderConfig(name="clip", model=str(tiny_clip)),),
            chunking=ChunkingConfig(text_strategy=strategy),
        )
        params = chunking_params(settings)
        rows = chunk_text("f", "Boats.", "a.txt", TextChunker(tokenizer, params["text"], embed)).rows
        assert [r["text"] for r in rows] == ["Boats."]  # the same window by every strategy ...
        ids[strategy] = rows[0]["chunk_id"]  # ... under a different id
        versions[strategy] = build_definitions(settings).resolve_asset_graph().get(dg.AssetKey("chunks")).code_version
    assert len(set(ids.values())) == 4 and len(set(versions.values())) == 4
    assert "semantic_encoder" in params["text"], "semantic breakpoints depend on the sentence encoder"


@pytest.mark.parametrize("ext, fmt", [(".wav", "wav"), (".flac", "flac"), (".mp3", "mp3"), (".ogg", "ogg")])
def test_audio_formats_are_read(tmp_path, ext, fmt):
    path = tmp_path / f"clip{ext}"
    path.write_bytes(media_corpus.audio_bytes(3.0, fmt))
    row = ingested(path)
    assert (row["status"], row["modality"]) == ("ok", "audio") and row["duration"] == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize("ext, fmt, codec", [(".webm", "webm", "libvpx"), (".mov", "mov", "mpeg4")])
def test_video_containers_are_read(chunker, params, tmp_path, ext, fmt, codec):
    path = tmp_path / f"film{ext}"
    path.write_bytes(media_corpus.video_bytes(fmt, codec))
    row = ingested(path)
    assert (row["status"], row["modality"], row["duration"]) == ("ok", "video", 6.0)
    frames = by_source(chunk_file(row, chunker, params, max_pixels=10**8, max_bytes=2**30).rows, "frame")
    assert [f["t_start"] for f in frames] == [0.0, 2.0, 4.0]


def test_audio_is_decoded_a_stretch_at_a_time_with_the_same_result(tmp_path, tiny_clap):
    """A long recording is embedded a few windows at a time (seeking); the samples and vectors match
    a decode of the whole file."""
    from mm_assets.encoders.clap import ClapEncoder
    from mm_assets.encoders.embed import AudioJob, embed_audio
    from mm_assets.ingest.media import decode_audio
    from mm_assets.ingest.reading import file_id_of

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


def test_semantic_chunking_runs_in_the_asset_with_the_default_encoder(settings, source):
    from dataclasses import replace

    from mm_assets_tests.helpers import db_rows, ingest_with_dagster

    (source / "texts" / "topics.txt").write_text(TOPICS * 3)
    semantic = replace(settings, chunking=replace(settings.chunking, text_strategy="semantic"))
    with dg.instance_for_test() as instance:
        _, result = ingest_with_dagster(semantic, instance)
    assert result.success
    params = result.asset_materializations_for_node("chunks")[0].metadata["params"].value
    assert params["text"]["strategy"] == "semantic"
    assert params["text"]["semantic_encoder"] == semantic.default_encoder.fingerprint
    windows = [
        r[0] for r in db_rows(semantic, "SELECT text FROM chunks WHERE source = 'window' AND text LIKE '%Soup%'")
    ]
    assert windows and all(w.rstrip().endswith((".", "!", "?")) for w in windows), "windows end on sentence ends"
