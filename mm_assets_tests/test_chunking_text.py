"""mm_assets/chunking/text.py: text windows by strategy, headings as context, chunk ids."""

from __future__ import annotations

import dagster as dg
import numpy as np

from mm_assets.chunking import chunking_params
from mm_assets.chunking.documents import chunk_text
from mm_assets.chunking.text import TextChunker, chunk_text_windows, split_markdown_sections, split_sentences
from mm_assets.config import EncoderConfig, Settings
from mm_assets.config_sections import ChunkingConfig
from mm_assets.definitions import build_definitions
from mm_assets.encoders.identity import fingerprint
from mm_assets_tests.corpus import MARKDOWN
from mm_assets_tests.helpers import chunk_limits, db_rows, ingest_with_dagster

TEXT_PARAMS = {"tokenizer": "tiny", "max_tokens": 77, "overlap": 16, "strategy": "heading", "strategy_version": "1"}
TOPICS = "Boats sail at dawn. Boats return at noon. Boats rest at night. Soup needs salt. Soup needs time. Soup is hot."


def n_tokens(tokenizer, text):
    return len(tokenizer(text)["input_ids"])


def test_windows_fit_the_context_and_overlap(tokenizer):
    text = " ".join(f"sentence number {i} talks about sailing boats." for i in range(40))
    windows = chunk_text_windows(text, tokenizer, max_tokens=77, overlap=16, markdown=False)
    assert len(windows) > 5
    for w in windows:
        assert n_tokens(tokenizer, w.text) <= 77 and w.n_tokens == n_tokens(tokenizer, w.text)
        assert w.text == text[w.char_start : w.char_end]
    for a, b in zip(windows, windows[1:]):
        assert b.char_start < a.char_end, "consecutive windows overlap"
        assert text[b.char_start - 1] == " ", "windows start on a word boundary"
    assert windows[0].char_start == 0 and windows[-1].char_end == len(text)


def test_markdown_headings_are_kept_as_context(tokenizer):
    sections = split_markdown_sections(MARKDOWN)
    assert [s.headings for s in sections] == [("Beach guide",), ("Beach guide", "Safety")]
    windows = chunk_text_windows(MARKDOWN, tokenizer, max_tokens=77, overlap=8, markdown=True)
    assert windows[0].text.startswith("Beach guide: Dogs love the beach.")
    assert all(n_tokens(tokenizer, w.text) <= 77 for w in windows)
    safety = [w for w in windows if w.heading == "Beach guide > Safety"]
    assert safety and all(w.text.startswith("Beach guide > Safety: ") for w in safety)
    assert any("shell comment" in w.text for w in safety), "'#' inside a code fence is not a heading"


def test_chunk_ids_are_content_addressed(tokenizer, tmp_path):
    a = chunk_text("f1", MARKDOWN, "a.md", TextChunker(tokenizer, TEXT_PARAMS), **chunk_limits(tmp_path)).rows
    b = chunk_text("f1", MARKDOWN, "elsewhere/b.md", TextChunker(tokenizer, TEXT_PARAMS), **chunk_limits(tmp_path)).rows
    c = chunk_text(
        "f1", MARKDOWN, "a.md", TextChunker(tokenizer, {**TEXT_PARAMS, "overlap": 8}), **chunk_limits(tmp_path)
    ).rows
    assert [r["chunk_id"] for r in a] == [r["chunk_id"] for r in b]
    assert {r["chunk_id"] for r in a}.isdisjoint(r["chunk_id"] for r in c)


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
        rows = chunk_text(
            "f", "Boats.", "a.txt", TextChunker(tokenizer, params["text"], embed), **chunk_limits(tmp_path)
        ).rows
        assert [r["text"] for r in rows] == ["Boats."]  # the same window by every strategy ...
        ids[strategy] = rows[0]["chunk_id"]  # ... under a different id
        versions[strategy] = build_definitions(settings).resolve_asset_graph().get(dg.AssetKey("chunks")).code_version
    assert len(set(ids.values())) == 4 and len(set(versions.values())) == 4
    assert "semantic_encoder" in params["text"], "semantic breakpoints depend on the sentence encoder"


def test_semantic_chunking_runs_in_the_asset_with_the_default_encoder(settings, source):
    from dataclasses import replace

    (source / "texts" / "topics.txt").write_text(TOPICS * 3)
    semantic = replace(settings, chunking=replace(settings.chunking, text_strategy="semantic"))
    with dg.instance_for_test() as instance:
        _, result = ingest_with_dagster(semantic, instance)
    assert result.success
    params = result.asset_materializations_for_node("chunks")[0].metadata["params"].value
    assert params["text"]["strategy"] == "semantic"
    assert params["text"]["semantic_encoder"] == fingerprint(semantic.default_encoder)
    windows = [r[0] for r in db_rows(semantic, "SELECT text FROM chunks WHERE role = 'window' AND text LIKE '%Soup%'")]
    assert windows and all(w.rstrip().endswith((".", "!", "?")) for w in windows), "windows end on sentence ends"


def test_a_text_of_one_long_line_is_tokenized_a_block_at_a_time(tokenizer):
    """A 1 MB file with no line break: the tokenizer never sees more than one block, and the windows
    still cover the text in order with their character ranges."""
    from mm_assets.chunking.text import _BLOCK_CHARS

    seen = []

    def spy(text, **kwargs):
        seen.append(len(text))
        return tokenizer(text, **kwargs)

    line = " ".join(f"boat{i % 97}" for i in range(150_000))
    windows = chunk_text_windows(line, spy, max_tokens=77, overlap=16, markdown=False, strategy="fixed")
    assert len(line) > 8 * _BLOCK_CHARS and max(seen) <= _BLOCK_CHARS
    assert windows[0].char_start == 0 and windows[-1].char_end == len(line)
    assert all(a.char_start < b.char_start for a, b in zip(windows, windows[1:]))
    assert all(line[w.char_start : w.char_end] == w.text for w in windows[:: len(windows) // 50])
    assert all(w.n_tokens <= 77 for w in windows)
