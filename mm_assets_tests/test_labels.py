"""mm_assets/ingest/labels.py: captions and labels from sidecar files and manifests."""

from __future__ import annotations

import json

from mm_assets.formats.reading import Boundary
from mm_assets.ingest.labels import CaptionIndex
from mm_assets_tests.corpus import gradient


def test_captions_from_sidecars_and_manifests(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("dog.jpg", "cat.jpg", "a/bird.png", "a/fish.png", "plain.jpg"):
        gradient(8, 8).save(tmp_path / name)
    (tmp_path / "dog.txt").write_text("a dog on a beach\n")
    (tmp_path / "captions.csv").write_text("path,caption,label\ncat.jpg,a sleepy cat,cats\na/bird.png,a bird,birds\n")
    (tmp_path / "a" / "captions.jsonl").write_text(json.dumps({"path": "fish.png", "caption": "a fish"}) + "\n")
    index = CaptionIndex(Boundary.of([tmp_path]))
    assert index.lookup(str(tmp_path / "dog.jpg")) == ("a dog on a beach", None)
    assert index.lookup(str(tmp_path / "cat.jpg")) == ("a sleepy cat", "cats")
    assert index.lookup(str(tmp_path / "a" / "bird.png")) == ("a bird", "birds")  # manifest in a parent folder
    assert index.lookup(str(tmp_path / "a" / "fish.png")) == ("a fish", None)
    assert index.lookup(str(tmp_path / "plain.jpg")) == (None, None)


def test_a_broken_manifest_is_reported_not_fatal(tmp_path):
    (tmp_path / "captions.csv").write_text("path,caption\nx.jpg,\n")
    index = CaptionIndex(Boundary.of([tmp_path]))
    assert index.lookup(str(tmp_path / "x.jpg")) == (None, None)
    assert index.errors and "needs 'path' and 'caption'" in index.errors[0]
