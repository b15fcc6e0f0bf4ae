"""Walk source folders and decide which files are new or changed since the last batch."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mm_assets.formats import SUPPORTED_EXTENSIONS
from mm_assets.formats.reading import Boundary


@dataclass(frozen=True)
class FoundFile:
    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Rejected:
    """Found but never read: the reason goes to the quarantine table."""

    path: str
    reason: str


def printable_path(path: str) -> str:
    """A path that survives UTF-8 storage: undecodable bytes become \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def walk_sources(sources: Iterable[str | os.PathLike]) -> Iterator[FoundFile | Rejected]:
    """Yield every file with a supported extension under the sources, in a stable order.

    Symlinks are followed only when they resolve inside a source folder (never directories, to
    rule out cycles); file names that are not valid UTF-8 are rejected rather than mangled.
    """
    boundary = Boundary.of(sources)
    roots = boundary.roots
    for root in roots:
        if not os.path.isdir(root):
            raise NotADirectoryError(f"source folder does not exist or is not a directory: {root}")
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                full = os.path.join(dirpath, name)
                if os.path.splitext(name)[1].lower() not in SUPPORTED_EXTENSIONS:
                    continue
                yield _classify(full, boundary)


def _classify(full: str, boundary: Boundary) -> FoundFile | Rejected:
    shown = printable_path(full)
    if shown != full:
        return Rejected(shown, "file name is not valid UTF-8; rename the file to ingest it")
    try:
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(full)
            if not boundary.contains(target):
                return Rejected(
                    full, f"symlink points outside the source folders (-> {printable_path(target)}); not followed"
                )
            st = os.stat(full)
    except OSError as exc:
        return Rejected(full, f"cannot stat file: {exc.strerror}")
    if stat.S_ISDIR(st.st_mode):
        return Rejected(full, "is a directory (or a link to one), not a file")
    if not stat.S_ISREG(st.st_mode):
        return Rejected(full, "not a regular file (FIFO, socket or device); not read")
    return FoundFile(full, st.st_size, st.st_mtime_ns)


def new_or_changed(
    found: Iterable[FoundFile | Rejected], seen: dict[str, tuple[int, int]]
) -> tuple[list[FoundFile], list[Rejected]]:
    """Entries whose (size, mtime) differ from what the seen-index recorded for their path.

    Rejected entries are reported once per path, so a bad file does not make a new batch every tick.
    """
    files: list[FoundFile] = []
    rejected: list[Rejected] = []
    for entry in found:
        if isinstance(entry, FoundFile):
            if seen.get(entry.path) != (entry.size, entry.mtime_ns):
                files.append(entry)
        elif entry.path not in seen:
            rejected.append(entry)
    return files, rejected
