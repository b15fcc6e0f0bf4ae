"""Reading a file's bytes, and its content address (the standard library only: the encoders and
search use these too, and run where the rest of the ingest stack may not be installed)."""

from __future__ import annotations

import hashlib
import os

from mm_assets.formats import BadFile


def file_id_of(data: bytes) -> str:
    """Content address of a file: identical bytes, identical id, wherever the file lives."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_file_bytes(path: str, max_bytes: int) -> bytes:
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise BadFile(f"file too large: {size:,} bytes exceeds the limit of {max_bytes:,}")
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise BadFile("file vanished before it could be read") from None
    except OSError as exc:
        raise BadFile(f"cannot read file: {exc.strerror or exc}") from None


def file_id_of_path(path: str) -> str:
    """The content address of a file too large to hold in memory (videos), hashed as it streams."""
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
    except FileNotFoundError:
        raise BadFile("file vanished before it could be read") from None
    except OSError as exc:
        raise BadFile(f"cannot read file: {exc.strerror or exc}") from None


def check_ingested_path(path: str, file_id: str) -> str:
    """``path``, if its content is still the one ingested (the streaming twin of read_ingested_file)."""
    if file_id_of_path(path) != file_id:
        raise BadFile("file changed since it was ingested; it will be picked up as a new version")
    return path


def read_ingested_file(path: str, file_id: str, max_bytes: int = 2**40) -> bytes:
    """Bytes of a file ingested earlier; refused if its content changed since (the new content is
    another file id, picked up by the next discovery)."""
    data = read_file_bytes(path, max_bytes)
    if file_id_of(data) != file_id:
        raise BadFile("file changed since it was ingested; it will be picked up as a new version")
    return data
