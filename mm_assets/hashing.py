"""Stable short hashes of configuration and content: fingerprints, code versions and ids (chunk ids
among them) depend on them, so they must never change for the same data."""

from __future__ import annotations

import hashlib
import json


def short_hash(payload: object, length: int = 12) -> str:
    """Stable hash of JSON-serialisable data (sorted keys), used for fingerprints and ids."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
