"""Walk source folders and decide which files were added, edited or deleted since the last batch."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from mm_assets.formats import SUPPORTED_EXTENSIONS
from mm_assets.formats.reading import Boundary


@dataclass(frozen=True)
class FoundFile:
    path: str
    size: int
    mtime_ns: int
    change: str = "added"  # why it is in a batch: added, edited, or dependency (a file it uses changed)


@dataclass(frozen=True)
class Rejected:
    """Found but never read: the reason goes to the quarantine table."""

    path: str
    reason: str


def printable_path(path: str) -> str:
    """A path that survives UTF-8 storage: undecodable bytes become \\xNN escapes."""
    try:
        path.encode("utf-8")  # the common case: nothing to escape
        return path
    except UnicodeEncodeError:
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
        folders = [root]  # depth first, each folder's entries in name order
        while folders:
            folder = folders.pop()
            try:
                with os.scandir(folder) as listing:
                    entries = sorted(listing, key=lambda e: e.name)
            except OSError:
                continue  # vanished or unreadable while walking: as os.walk does
            subfolders = []
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):  # from the directory listing: no stat call
                    subfolders.append(entry.path)
                elif os.path.splitext(entry.name)[1].lower() in SUPPORTED_EXTENSIONS:
                    yield _classify(entry, boundary)
            folders.extend(reversed(subfolders))


def _classify(entry: os.DirEntry, boundary: Boundary) -> FoundFile | Rejected:
    full = entry.path
    shown = printable_path(full)
    if shown != full:
        return Rejected(shown, "file name is not valid UTF-8; rename the file to ingest it")
    try:
        if entry.is_symlink():
            target = os.path.realpath(full)
            if not boundary.contains(target):
                return Rejected(
                    full, f"symlink points outside the source folders (-> {printable_path(target)}); not followed"
                )
            st = os.stat(full)
        else:
            st = entry.stat(follow_symlinks=False)
    except OSError as exc:
        return Rejected(full, f"cannot stat file: {exc.strerror}")
    if stat.S_ISDIR(st.st_mode):
        return Rejected(full, "is a directory (or a link to one), not a file")
    if not stat.S_ISREG(st.st_mode):
        return Rejected(full, "not a regular file (FIFO, socket or device); not read")
    return FoundFile(full, st.st_size, st.st_mtime_ns)


class Seen(NamedTuple):
    """What the seen index holds for a path: its state when last batched, and by which batch (a
    tuple: a tick loads one per path, 100,000 of them)."""

    size: int  # -1 for a path discovery rejected without reading
    mtime_ns: int
    batch: str | None
    dependencies: tuple[str, ...] = ()
    dependency_state: int = 0  # of their sizes and times: cheap, checked every tick
    dependency_content: int = 0  # of what the file takes from them: checked when the state changed


@dataclass
class Changes:
    files: list[FoundFile]  # added or edited, or whose dependencies changed
    rejected: list[Rejected]
    deleted: list[str]  # paths seen before, gone now
    # Paths whose dependencies were touched without changing what the file takes from them (another
    # image's row of a captions manifest was edited): their new state, so the check is not repeated.
    refreshed: dict[str, Seen] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.files or self.rejected or self.deleted)


def find_changes(
    found: Iterable[FoundFile | Rejected],
    seen: dict[str, Seen],
    roots: Iterable[str],
    dependency_state: Callable[[tuple[str, ...]], int],
    dependency_content: Callable[[str, tuple[str, ...]], int],
) -> Changes:
    """What differs between the folders as they are now and the seen index: files whose (size, mtime)
    changed or whose dependencies changed what the file takes from them, new rejections (each reported
    once, so a bad file does not make a batch every tick), and deletions among the paths under
    ``roots`` (the folders walked: a run over other folders deletes nothing)."""
    changes = Changes([], [], [])
    present = set()
    for entry in found:
        present.add(entry.path)
        before = seen.get(entry.path)
        if isinstance(entry, Rejected):
            if before is None or before.size != -1:
                changes.rejected.append(entry)
        elif before is None:
            changes.files.append(entry)
        elif (before.size, before.mtime_ns) != (entry.size, entry.mtime_ns):
            changes.files.append(replace(entry, change="edited"))
        elif before.dependencies and (state := dependency_state(before.dependencies)) != before.dependency_state:
            if dependency_content(entry.path, before.dependencies) != before.dependency_content:
                changes.files.append(replace(entry, change="dependency"))
            else:
                changes.refreshed[entry.path] = before._replace(dependency_state=state)
    prefixes = tuple(root.rstrip(os.sep) + os.sep for root in roots)
    changes.deleted = sorted(p for p in seen if p not in present and p.startswith(prefixes))
    return changes
