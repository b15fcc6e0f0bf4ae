"""Captions and labels for images, the easy way.

- a sidecar text file with the image's stem (``dog.jpg`` + ``dog.txt``), or
- a ``captions.csv`` (header: path, caption[, label]) or ``captions.jsonl`` (one object per line with
  those keys) in the image's folder or any folder above it; paths are relative to the manifest.
Several images may share a label; an image without a label is relevant only to its own caption.
"""

from __future__ import annotations

import csv
import json
import os
import threading

from mm_assets.formats import BadFile
from mm_assets.formats.text import decode_text

CAPTION_MANIFESTS = ("captions.csv", "captions.jsonl")
Caption = tuple[str | None, str | None]  # (caption, label)


class CaptionManifestError(ValueError):
    pass


def _read_manifest(path: str) -> dict[str, Caption]:
    folder = os.path.dirname(path)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        if path.endswith(".csv"):
            rows = list(csv.DictReader(fh))
        else:
            rows = [json.loads(line) for line in fh if line.strip()]
    out = {}
    for i, row in enumerate(rows, 1):
        if not row.get("path") or not row.get("caption"):
            raise CaptionManifestError(f"{path}: row {i} needs 'path' and 'caption'")
        target = os.path.normpath(os.path.join(folder, row["path"]))
        out[target] = (row["caption"].strip(), (row.get("label") or "").strip() or None)
    return out


class CaptionIndex:
    """Looks captions up per image; each manifest is read once (thread-safe, used by a decode pool)."""

    def __init__(self):
        self._manifests: dict[str, dict[str, Caption]] = {}
        self._lock = threading.Lock()
        self.errors: list[str] = []  # unreadable manifests: reported, never fatal

    def _manifest_captions(self, folder: str) -> dict[str, Caption]:
        with self._lock:
            if folder not in self._manifests:
                merged: dict[str, Caption] = {}
                for name in CAPTION_MANIFESTS:
                    candidate = os.path.join(folder, name)
                    if os.path.isfile(candidate):
                        try:
                            merged.update(_read_manifest(candidate))
                        except (OSError, ValueError, CaptionManifestError) as exc:
                            self.errors.append(f"{candidate}: {exc}")
                self._manifests[folder] = merged
            return self._manifests[folder]

    def lookup(self, image_path: str) -> Caption:
        stem = os.path.splitext(image_path)[0]
        sidecar = stem + ".txt"
        if os.path.isfile(sidecar):
            try:
                with open(sidecar, "rb") as fh:
                    caption = decode_text(fh.read())[0].strip()
                if caption:
                    return caption, None
            except (OSError, BadFile):
                pass  # an unreadable sidecar is quarantined on its own when ingested as text
        target = os.path.normpath(image_path)
        folder = os.path.dirname(target)
        while True:
            found = self._manifest_captions(folder).get(target)
            if found:
                return found
            parent = os.path.dirname(folder)
            if parent == folder:
                return None, None
            folder = parent
