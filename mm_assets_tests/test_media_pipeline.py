"""Documents, videos and audio through the whole asset graph, next to broken ones, then searched."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest

from mm_assets.config import EncoderConfig, Settings
from mm_assets.search.query import search
from mm_assets_tests.helpers import clip_and_clap_settings, db_rows, ingest_with_dagster
from mm_assets_tests.media_corpus import PDF_CAPTIONS, write_broken_media, write_media_corpus


@pytest.fixture
def media_settings(tmp_path, tiny_clip, tiny_clap) -> tuple[Settings, dict, dict]:
    good = write_media_corpus(tmp_path / "src" / "media")
    broken = write_broken_media(tmp_path / "src" / "broken")
    return clip_and_clap_settings(tmp_path, tiny_clip, tiny_clap), good, broken


def test_documents_video_and_audio_end_to_end(media_settings):
    settings, good, broken = media_settings
    with dg.instance_for_test() as instance:
        _, result = ingest_with_dagster(settings, instance)
    assert result.success

    # broken PDFs, videos and audio are quarantined with their reason; the batch went on
    quarantine = {p.rsplit("/", 1)[1]: r for p, r in db_rows(settings, "SELECT path, reason FROM quarantine")}
    assert set(quarantine) == set(broken)
    for name, fragment in broken.items():
        assert fragment in quarantine[name]
    files = dict(db_rows(settings, "SELECT path, kind FROM files"))
    assert {files[str(good[k])] for k in ("pdf", "markdown", "video", "audio")} == {
        "document",
        "text",
        "video",
        "audio",
    }

    # documents evaluate themselves: each caption and alt text looks for its own figure among all figures
    evaluation = result.asset_materializations_for_node("retrieval_eval")[0].metadata
    assert evaluation["clip/caption->figure/chance@1"].value == pytest.approx(1 / 5)  # 5 figures
    assert evaluation["clip/caption->figure/n_queries"].value == 8  # 5 captions, 3 alt texts with their image

    # the right chunks of each kind
    counts = dict(db_rows(settings, "SELECT role, count(*) FROM chunks GROUP BY role"))
    assert counts["figure"] == 5 and counts["caption"] == 5  # 2 in the PDF, 2 in the markdown, 1 in the HTML
    assert counts["frame"] == 3 and counts["subtitle"] == 1 and counts["audio_window"] == 4

    # every chunk has a vector from the encoder of its modality, and only from that one
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    # chunks: every file has chunks; per encoder: valid, complete; vector_tables: the three serving checks
    assert all(checks.values()) and len(checks) == 8
    tables = {
        name: (table, n) for name, table, n in db_rows(settings, "SELECT name, table_name, n_vectors FROM encoders")
    }
    audio_chunks = db_rows(settings, "SELECT count(*) FROM chunks WHERE modality = 'audio'")[0][0]
    assert tables["clap"][1] == audio_chunks == 4
    assert tables["clip"][1] == db_rows(settings, "SELECT count(*) FROM chunks WHERE modality != 'audio'")[0][0]
    (clap_meta,) = db_rows(settings, "SELECT metadata->>'architecture', metadata->>'audio_sample_rate' FROM encoders "
                           "WHERE name = 'clap'")  # fmt: skip
    assert clap_meta == ("ClapModel", "48000")

    # the figure is found by the words of its caption, with its page and place, and its paragraph
    (hit,) = search(settings.db_path, text=PDF_CAPTIONS[1], k=1, context=2)
    assert hit.path == str(good["pdf"]) and (hit.role, hit.page) == ("caption", 2) and hit.distance < 1e-4
    assert hit.describes["role"] == "figure" and hit.describes["page"] == 2
    assert hit.describes["bbox"] == pytest.approx(hit.bbox)
    around = {c["role"]: c for c in hit.context}
    assert around["figure"]["chunk_id"] == hit.describes["chunk_id"]
    assert around["window"]["page"] == 2

    # a hit on the first figure itself shows the paragraph it belongs to, and its caption
    (first_figure, vector) = db_rows(
        settings,
        f"SELECT c.chunk_id, e.embedding FROM chunks c JOIN {tables['clip'][0]} e USING (chunk_id) "
        "WHERE c.role = 'figure' AND c.page = 2 ORDER BY c.position LIMIT 1",
    )[0]
    (figure,) = search(settings.db_path, vector=np.asarray(vector, np.float32), k=1, context=1)
    assert figure.chunk_id == first_figure and (figure.role, figure.page) == ("figure", 2)
    before, after = figure.context
    assert before["role"] == "window" and before["page"] == 2 and "lighthouse keeper" in before["text"]
    assert after["role"] == "caption" and after["text"] == PDF_CAPTIONS[0]

    # a frame carries its time span in the video
    frames = search(settings.db_path, text="green", k=50, modality="image")
    spans = sorted((h.t_start, h.t_end) for h in frames if h.path == str(good["video"]))
    assert spans == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]

    # text -> audio through the CLAP encoder: audio windows with their timestamps
    audio = search(settings.db_path, text="a rising tone", k=10, encoder="clap")
    assert {h.modality for h in audio} == {"audio"} and len(audio) == 4
    assert sorted((h.path.rsplit("/", 1)[1], h.t_start, h.t_end) for h in audio) == [
        ("blip.flac", 0.0, 3.0),
        ("tone.wav", 0.0, 10.0),
        ("tone.wav", 8.0, 18.0),
        ("tone.wav", 16.0, 25.0),
    ]
    assert len(search(settings.db_path, text="a rising tone", k=10, encoder="clap", group_by_file=True)) == 2
    # audio -> audio: a clip's first window finds itself
    (same,) = search(settings.db_path, audio=str(good["audio"]), k=1, encoder="clap")
    assert (same.path, same.t_start, same.t_end) == (str(good["audio"]), 0.0, 10.0) and same.distance < 1e-4
    with pytest.raises(ValueError, match="cannot take an image query"):
        search(settings.db_path, image=str(good["markdown"].parent / "img" / "boat.png"), encoder="clap")


def test_a_clip_model_configured_for_audio_fails_with_a_clear_message(tiny_clip):
    from mm_assets.encoders.load import load_encoder

    with pytest.raises(ValueError, match="embeds image and text, not audio"):
        load_encoder(EncoderConfig(name="clip", model=str(tiny_clip), modalities=("audio",)))
