"""Captions and labels for images, the easy way.

- a sidecar text file with the image's stem (``dog.jpg`` + ``dog.txt``), or
- a ``captions.csv`` (header: path, caption[, label]) or ``captions.jsonl`` (one object per line with
  those keys) in the image's folder or any folder above it, up to the source folder; paths are
  relative to the manifest.
Several images may share a label; an image without a label is relevant only to its own caption.
Sidecars and manifests are read like any file: only regular files inside the source folders, bounded.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from collections.abc import Iterator

from mm_assets.formats import BadFile
from mm_assets.formats.reading import Boundary
from mm_assets.formats.text import decode_text

CAPTION_MANIFESTS = ("captions.csv", "captions.jsonl")
MAX_SIDECAR_BYTES = 1024 * 1024
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
Caption = tuple[str | None, str | None]  # (caption, label)


class CaptionManifestError(ValueError):
    pass


def _read_manifest(path: str, boundary: Boundary) -> dict[str, Caption]:
    folder = os.path.dirname(path)
    text = boundary.read(path, MAX_MANIFEST_BYTES).decode("utf-8-sig")
    if path.endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    out = {}
    for i, row in enumerate(rows, 1):
        if not row.get("path") or not row.get("caption"):
            raise CaptionManifestError(f"{path}: row {i} needs 'path' and 'caption'")
        target = os.path.normpath(os.path.join(folder, row["path"]))
        out[target] = (row["caption"].strip(), (row.get("label") or "").strip() or None)
    return out


class CaptionIndex:
    """Looks captions up per image; each manifest is read once (thread-safe, used by a decode pool)."""

    def __init__(self, boundary: Boundary):
        self.boundary = boundary
        self._manifests: dict[str, dict[str, Caption]] = {}
        self._lock = threading.Lock()
        self.errors: list[str] = []  # unreadable manifests: reported, never fatal

    def _manifest_captions(self, folder: str) -> dict[str, Caption]:
        with self._lock:
            if folder not in self._manifests:
                merged: dict[str, Caption] = {}
                for name in CAPTION_MANIFESTS:
                    candidate = os.path.join(folder, name)
                    if os.path.lexists(candidate):
                        try:
                            merged.update(_read_manifest(candidate, self.boundary))
                        except (OSError, ValueError, BadFile) as exc:
                            self.errors.append(f"{candidate}: {exc}")
                self._manifests[folder] = merged
            return self._manifests[folder]

    def lookup(self, image_path: str) -> Caption:
        sidecar = sidecar_path(image_path)
        if os.path.lexists(sidecar):
            try:
                caption = decode_text(self.boundary.read(sidecar, MAX_SIDECAR_BYTES))[0].strip()
                if caption:
                    return caption, None
            except BadFile:
                pass  # discovery quarantines it on its own (outside the sources, unreadable, or not text)
        target = os.path.normpath(image_path)
        for folder in manifest_folders(target, self.boundary):
            found = self._manifest_captions(folder).get(target)
            if found:
                return found
        return None, None


def sidecar_path(image_path: str) -> str:
    return os.path.splitext(image_path)[0] + ".txt"


def manifest_folders(image_path: str, boundary: Boundary) -> Iterator[str]:
    """The image's folder and each folder above it up to the source folder, nearest first."""
    folder = os.path.dirname(os.path.normpath(image_path))
    while boundary.contains(os.path.realpath(folder)):
        yield folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def caption_files(image_path: str, boundary: Boundary) -> list[str]:
    """Every file an image's caption may come from, whether it exists now or not."""
    manifests = [os.path.join(f, name) for f in manifest_folders(image_path, boundary) for name in CAPTION_MANIFESTS]
    return [sidecar_path(image_path), *manifests]
