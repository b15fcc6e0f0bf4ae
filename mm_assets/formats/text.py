"""Decode text files in any common encoding; refuse binary content."""

from __future__ import annotations

import codecs

from charset_normalizer import from_bytes

from mm_assets.formats import BadFile

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ALLOWED_CONTROLS = set("\t\n\r\f\v")


def _decode_legacy(data: bytes) -> tuple[str, str]:
    """Non-UTF text. Western text (mostly ASCII, a few accents) is cp1252/Latin-1, which detectors
    often mistake for a neighbouring code page on short files; anything else goes to detection."""
    try:
        text = data.decode("cp1252")
        letters = [ch for ch in text if ch.isalpha()]
        if letters and sum(not ch.isascii() for ch in letters) / len(letters) < 0.3:
            return text, "cp1252"
    except UnicodeDecodeError:
        pass
    best = from_bytes(data).best()
    if best is None:
        raise BadFile("binary content: no text encoding fits")
    return str(best), best.encoding


def decode_text(data: bytes) -> tuple[str, str]:
    """Return (text, encoding). BOMs first, then strict UTF-8, then charset detection (Latin-1 etc.)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding.replace("-sig", "")
            except UnicodeDecodeError as exc:
                raise BadFile(f"invalid {encoding} text after its byte-order mark: {exc.reason}") from None
    if b"\x00" in data:
        raise BadFile("binary content (NUL bytes), not text")
    try:
        text, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = _decode_legacy(data)
    controls = sum(1 for ch in text if ch < " " and ch not in _ALLOWED_CONTROLS)
    if controls > max(2, len(text) // 100):
        raise BadFile(f"binary content: {controls} control characters in {len(text)} characters")
    return text, encoding
