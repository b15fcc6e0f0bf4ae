"""File formats: the readers of images, text, PDFs, markdown/HTML, video and audio, and subtitles.

Used by ingest (inspecting a file), chunking (cutting it up), the encoders (decoding what they embed)
and search (a query image or audio clip). A file that cannot be read raises ``BadFile`` with the reason
shown to users.
"""

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# Markdown and HTML are text whose headings make sections and whose image references become image chunks.
TEXT_EXTENSIONS = frozenset({".txt", ".md", ".markdown", ".html", ".htm"})
PDF_EXTENSIONS = frozenset({".pdf"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".mov", ".mkv", ".m4v"})
AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a"})
SUPPORTED_EXTENSIONS = IMAGE_EXTENSIONS | TEXT_EXTENSIONS | PDF_EXTENSIONS | VIDEO_EXTENSIONS | AUDIO_EXTENSIONS


class BadFile(Exception):
    """A file that cannot be ingested; the message is the quarantine reason shown to users."""


def failure_reason(exc: Exception) -> str:
    """What to tell the user about a file that failed: our own reason, or the decoder's error (a
    decoder bug on hostile bytes must cost one file, never the batch)."""
    return str(exc) if isinstance(exc, BadFile) else f"unreadable ({type(exc).__name__}: {exc})"
