import pytest
from transformers import AutoTokenizer

from mm_assets.chunking.documents import chunk_text
from mm_assets.chunking.files import chunk_image
from mm_assets.chunking.text import TextChunker, chunk_text_windows, split_markdown_sections
from mm_assets_tests.corpus import MARKDOWN

TEXT_PARAMS = {"tokenizer": "tiny", "max_tokens": 77, "overlap": 16, "strategy": "heading", "strategy_version": "1"}


@pytest.fixture(scope="module")
def tokenizer(tiny_clip):
    return AutoTokenizer.from_pretrained(tiny_clip)


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


def test_chunk_ids_are_content_addressed(tokenizer):
    a = chunk_text("f1", MARKDOWN, "a.md", TextChunker(tokenizer, TEXT_PARAMS)).rows
    b = chunk_text("f1", MARKDOWN, "elsewhere/b.md", TextChunker(tokenizer, TEXT_PARAMS)).rows
    c = chunk_text("f1", MARKDOWN, "a.md", TextChunker(tokenizer, {**TEXT_PARAMS, "overlap": 8})).rows
    assert [r["chunk_id"] for r in a] == [r["chunk_id"] for r in b]
    assert {r["chunk_id"] for r in a}.isdisjoint(r["chunk_id"] for r in c)


def test_images_are_whole_plus_optional_tiles():
    assert [r["bbox"] for r in chunk_image("f", {"tiles": 0}).rows] == [[0.0, 0.0, 1.0, 1.0]]
    tiled = chunk_image("f", {"tiles": 2}).rows
    assert len(tiled) == 5 and tiled[4]["bbox"] == [0.5, 0.5, 1.0, 1.0]
    assert len({r["chunk_id"] for r in tiled}) == 5
