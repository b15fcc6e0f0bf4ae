"""Reading a file's bytes, and its content address (the standard library only: the encoders and
search use these too, and run where the rest of the ingest stack may not be installed)."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from mm_assets.formats import BadFile


@dataclass(frozen=True)
class Boundary:
    """The folders the product may read from: the configured sources, after symlinks. Every file it
    opens, wherever the path came from (discovery, a link in a document, a sidecar), passes here."""

    roots: tuple[str, ...]

    @classmethod
    def of(cls, folders: Iterable[str | os.PathLike]) -> Boundary:
        return cls(tuple(os.path.realpath(f) for f in folders))

    def contains(self, real_path: str) -> bool:
        return any(real_path == r or real_path.startswith(r.rstrip(os.sep) + os.sep) for r in self.roots)

    def resolve(self, path: str) -> str:
        """The real path of ``path`` if it is a regular file inside the roots; otherwise BadFile with
        the reason (never opened: a FIFO would block, a device would never end)."""
        real = os.path.realpath(path)
        if not self.contains(real):
            raise BadFile(f"{path} resolves outside the source folders; not read")
        try:
            mode = os.stat(real).st_mode
        except FileNotFoundError:
            raise BadFile(f"{path} does not exist") from None
        except OSError as exc:
            raise BadFile(f"cannot stat {path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(mode):
            raise BadFile(f"{path} is not a regular file (a folder, FIFO, socket or device); not read")
        return real

    def read(self, path: str, max_bytes: int) -> bytes:
        return read_file_bytes(self.resolve(path), max_bytes)


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
