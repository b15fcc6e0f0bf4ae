"""``dedup``: one hit per duplicate group, the best ranked (groups: mm_assets/duplicates.py)."""

from __future__ import annotations

from pathlib import Path

from mm_assets.duplicates import pair_groups, read_pairs
from mm_assets.search.hits import SearchHit, first_per_key


class DuplicateGroups:
    """Chunk id -> its duplicate group, reread when the duplicates asset publishes new pairs."""

    def __init__(self, pairs: Path | None):
        self.pairs = pairs  # None: nothing to collapse
        self._groups: tuple[int, dict[str, str]] | None = None

    def groups(self) -> dict[str, str]:
        try:
            stamp = self.pairs.stat().st_mtime_ns if self.pairs else None
        except FileNotFoundError:
            stamp = None
        if stamp is None:
            return {}
        if self._groups is None or self._groups[0] != stamp:
            self._groups = (stamp, pair_groups(read_pairs(self.pairs)))
        return self._groups[1]

    def first_per_group(self, hits: list[SearchHit]) -> list[SearchHit]:
        """Each group once, at its best hit; a chunk in no group is its own."""
        groups = self.groups()
        return first_per_key(hits, lambda h: groups.get(h.chunk_id, h.chunk_id))
