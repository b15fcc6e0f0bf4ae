"""mm_assets/chunking/documents.py: PDFs (pages, figures, captions), markdown and HTML with their images."""

from __future__ import annotations

from mm_assets.chunking.by_kind import chunk_file
from mm_assets.chunking.documents import chunk_pdf, chunk_text
from mm_assets_tests import media_corpus
from mm_assets_tests.helpers import by_role, chunk_limits, inspect, params_for
from mm_assets_tests.media_corpus import PDF_CAPTIONS


def test_pdf_pages_figures_and_captions(chunker, params):
    rows = chunk_pdf("doc", media_corpus.pdf_bytes(), chunker, params["document"], max_pixels=10**8).rows
    windows, figures, captions = by_role(rows, "window"), by_role(rows, "figure"), by_role(rows, "caption")
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
    rows = chunk_pdf("doc", media_corpus.pdf_bytes(), chunker, params["document"], max_pixels=10**8).rows
    pages = by_role(rows, "page")
    assert [p["page"] for p in pages] == [1, 2] and all(p["media"] and p["modality"] == "image" for p in pages)
    plain = chunk_pdf(
        "doc", media_corpus.pdf_bytes(), chunker, params_for(tiny_clip, tmp_path)["document"], max_pixels=10**8
    ).rows
    assert {r["chunk_id"] for r in rows}.isdisjoint(r["chunk_id"] for r in plain), "a parameter is part of the id"


def test_markdown_images_link_to_their_section(chunker, params, tmp_path):
    doc = media_corpus.write_markdown_with_images(tmp_path / "notes")
    found = chunk_file(inspect(doc), chunker, params, **chunk_limits(tmp_path))
    rows = found.rows
    figures = by_role(rows, "figure")
    assert [f["text"] for f in figures] == ["img/boat.png", "img/chart.png"] and all(f["media"] for f in figures)
    boat, chart = figures
    # the boat belongs to the first section, the chart to "Weather", as their surrounding text does
    assert boat["heading"] == "Harbour report" and chart["heading"] == "Harbour report > Weather"
    section_text = {}
    for r in by_role(rows, "window"):
        section_text[r["section"]] = section_text.get(r["section"], "") + r["text"]
    assert "Fishing boats leave at dawn" in section_text[boat["section"]]
    assert "Rain fell all week" in section_text[chart["section"]]
    # alt text and captions are text chunks linked to their image
    described = {(r["role"], r["text"]): r["linked_chunk_id"] for r in rows if r["linked_chunk_id"]}
    assert described == {
        ("alt_text", "An orange fishing boat"): boat["chunk_id"],
        ("caption", "Figure 1: the boat at the pier"): boat["chunk_id"],
        ("alt_text", "Rainfall bars"): chart["chunk_id"],
        ("caption", "Figure 2: weekly rainfall"): chart["chunk_id"],
    }
    # a missing file and a remote URL are reported, and cost nothing else
    assert len(found.problems) == 2 and "missing.png" in found.problems[0] and "no network" in found.problems[1]
    assert {r["text"] for r in by_role(rows, "alt_text") if r["linked_chunk_id"] is None} == {"Gone", "Remote"}

    # the linked image's content is part of the figure's id: replacing it re-embeds that figure only
    (doc.parent / "img" / "boat.png").write_bytes((doc.parent / "img" / "chart.png").read_bytes())
    again = chunk_file(inspect(doc), chunker, params, **chunk_limits(tmp_path)).rows
    changed = {r["chunk_id"] for r in rows} ^ {r["chunk_id"] for r in again}
    assert changed == {boat["chunk_id"], by_role(again, "figure")[0]["chunk_id"]}


def test_html_text_sections_and_figure(chunker, tmp_path):
    doc = media_corpus.write_html_with_images(tmp_path / "web")
    rows = chunk_text("page", doc.read_text(), str(doc), chunker, **chunk_limits(tmp_path)).rows
    windows = by_role(rows, "window")
    assert [w["text"] for w in windows] == [
        "Net mending: Nets are mended in winter.",
        "Net mending > Tools: Needles and twine.",
    ]
    assert not any("ignored" in (r["text"] or "") or "p {}" in (r["text"] or "") for r in rows), "no script or style"
    (figure,) = by_role(rows, "figure")
    assert figure["section"] == windows[0]["section"] and figure["heading"] == "Net mending"
    assert {r["text"] for r in rows if r["linked_chunk_id"] == figure["chunk_id"]} == {
        "A purple net",
        "Figure 3: a mended net",
    }


def test_a_pdf_figure_beyond_the_pixel_limit_is_never_decoded(chunker, params):
    """A 1-bit 8000x8000 image (64 M pixels) compresses to a few kB inside a PDF."""
    import io

    from fpdf import FPDF
    from PIL import Image

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(0, 6, "A page with a huge figure.")
    png = io.BytesIO()
    Image.new("1", (8000, 8000)).save(png, "PNG")
    pdf.image(png, x=20, y=40, w=60)
    pdf.image(io.BytesIO(media_corpus._png((200, 30, 30))), x=20, y=120, w=60)
    found = chunk_pdf("doc", bytes(pdf.output()), chunker, params["document"], max_pixels=10_000_000)
    assert len(by_role(found.rows, "figure")) == 1, "the small figure is kept"
    assert found.problems == ["page 1: a 8000x8000 figure exceeds the limit of 10,000,000 pixels; not decoded"]
    assert by_role(found.rows, "window"), "the page text still counts"
