"""Ingest: find files, decide their type by content, validate them, quarantine what is bad."""

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
TEXT_EXTENSIONS = frozenset({".txt", ".md", ".markdown"})
SUPPORTED_EXTENSIONS = IMAGE_EXTENSIONS | TEXT_EXTENSIONS


class BadFile(Exception):
    """A file that cannot be ingested; the message is the quarantine reason shown to users."""
