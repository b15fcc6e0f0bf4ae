"""Fused items: a captioned image and its caption as one vector (intermediate fusion), embedded by a
configured encoder of its own with lineage to both inputs; recommendation ("items like this one");
item->item evaluated against image only, caption only and late fusion, with the fitted weight."""

import csv
import json

import dagster as dg
import numpy as np
import pytest

from mm_assets.chunking.by_kind import chunk_image
from mm_assets.cli import main
from mm_assets.config import EncoderConfig, FineTuneConfig, FuseConfig, Settings
from mm_assets.demo import generate_corpus
from mm_assets.encoders.fusion import fuse_vectors
from mm_assets.encoders.identity import encoder_key, fingerprint
from mm_assets.encoders.load import recorded_encoder
from mm_assets.evaluation.history import latest_results
from mm_assets.evaluation.items import _recommendation_metrics, fit_image_weight
from mm_assets.runs import run_evaluation, run_pipeline
from mm_assets.search.query import Searcher


def test_fused_encoders_are_checked(tmp_path, tiny_clip):
    with pytest.raises(ValueError, match="fuse.of must name an encoder listed before it"):
        Settings(home=tmp_path, encoders=(EncoderConfig("items", fuse=FuseConfig(of="clip")), EncoderConfig("clip")))
    both = EncoderConfig("x", fine_tune=FineTuneConfig(base="clip"), fuse=FuseConfig(of="clip"))
    with pytest.raises(ValueError, match="fine_tune or fuse, not both"):
        Settings(home=tmp_path, encoders=(EncoderConfig("clip"), both))
    with pytest.raises(ValueError, match="fuse.mode"):
        FuseConfig(of="clip", mode="early")
    with pytest.raises(ValueError, match="image_weight"):
        FuseConfig(of="clip", image_weight=1.5)
    clip = EncoderConfig("clip", model=str(tiny_clip))
    half = Settings(home=tmp_path, encoders=(clip, EncoderConfig("items", fuse=FuseConfig("clip", 0.5))))
    more = Settings(home=tmp_path, encoders=(clip, EncoderConfig("items", fuse=FuseConfig("clip", 0.7))))
    items = half.encoder("items")
    assert items.model == clip.model and items.base == clip and not items.trained_here
    assert fingerprint(items) != fingerprint(more.encoder("items")), "another weight is another embedding space"
    tuned = Settings(
        home=tmp_path,
        encoders=(
            clip,
            EncoderConfig("tuned", fine_tune=FineTuneConfig(base="clip")),
            EncoderConfig("items", fuse=FuseConfig("tuned")),
        ),
    ).encoder("items")
    assert tuned.model == str(tmp_path / "models" / "tuned") and tuned.trained_here and tuned.awaiting_training


def test_items_are_added_without_changing_other_chunk_ids():
    plain = chunk_image("f", {"tiles": 2}, caption="a cat on a mat").rows
    items = chunk_image("f", {"tiles": 2, "items": True}, caption="a cat on a mat").rows
    assert [r["chunk_id"] for r in items[:-1]] == [r["chunk_id"] for r in plain]
    assert (items[-1]["role"], items[-1]["modality"], items[-1]["text"]) == ("item", "image", "a cat on a mat")
    recaptioned = chunk_image("f", {"tiles": 2, "items": True}, caption="a dog").rows
    assert recaptioned[-1]["chunk_id"] != items[-1]["chunk_id"], "the caption is part of the item"
    assert [r["role"] for r in chunk_image("f", {"tiles": 0, "items": True}).rows] == ["image"], "no caption, no item"


def test_the_fitted_weight_uses_what_each_input_knows():
    """Images that tell only the colour, captions that tell only the shape: each alone finds a third of
    the right items at best, fused they find them all, and the fitted weight is near the middle."""
    rng = np.random.default_rng(0)
    colours, shapes = rng.normal(size=(3, 32)), rng.normal(size=(3, 32))
    labels = [f"{c}-{s}" for c in range(3) for s in range(3) for _ in range(4)]
    images = colours[[int(label[0]) for label in labels]] + rng.normal(scale=0.3, size=(len(labels), 32))
    captions = shapes[[int(label[2]) for label in labels]] + rng.normal(scale=0.3, size=(len(labels), 32))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    captions /= np.linalg.norm(captions, axis=1, keepdims=True)
    weight = fit_image_weight(images, captions, labels)
    assert 0.3 <= weight <= 0.7
    mrr = {
        name: _recommendation_metrics(vectors, labels)["mrr"]
        for name, vectors in (
            ("image", images),
            ("caption", captions),
            ("fused", fuse_vectors(images, captions, weight)),
        )
    }
    assert mrr["fused"] > 0.95 > 0.7 > max(mrr["image"], mrr["caption"])


@pytest.fixture
def catalogue(tmp_path, tiny_clip) -> Settings:
    """The demo's shapes (two per label) as a catalogue: a base model, it fine-tuned, items fused by it."""
    generate_corpus(tmp_path / "corpus", per_label=2)
    return Settings(
        home=tmp_path / "home",
        sources=(tmp_path / "corpus",),
        encoders=(
            EncoderConfig("clip", model=str(tiny_clip), batch_size=32),
            EncoderConfig("tuned", batch_size=32, fine_tune=FineTuneConfig(base="clip", epochs=1, batch_size=16)),
            EncoderConfig("items", batch_size=32, fuse=FuseConfig(of="tuned", image_weight=0.7)),
            EncoderConfig("items_late", batch_size=32, fuse=FuseConfig(of="tuned", image_weight=0.7, mode="late")),
        ),
    )


def _item_rows(searcher: Searcher, settings: Settings) -> list[tuple]:
    return (
        searcher.served.connection()
        .execute(f"""
        SELECT c.chunk_id, c.text, f.path, i.chunk_id FROM chunks c JOIN files f USING (file_id)
        JOIN {"emb_" + encoder_key(settings.encoder("items"))} e USING (chunk_id)
        JOIN chunks i ON i.file_id = c.file_id AND i.position = 0
        WHERE c.role = 'item' ORDER BY f.path""")
        .fetchall()
    )


def test_items_fuse_image_and_caption_follow_caption_edits_and_are_recommended(catalogue, capsys):
    settings = catalogue
    with dg.instance_for_test() as instance:
        summary = run_pipeline(settings, list(settings.sources), instance=instance)
        assert summary.ok and summary.trained == ["fine_tuned/tuned"], "items wait for the model they fuse with"
        with Searcher(settings.db_path) as searcher:
            tables = {t.name: t for t in searcher.served.tables()}
            items, tuned = tables["items"], tables["tuned"]
            rows = _item_rows(searcher, settings)
            assert len(rows) == items.n_vectors == tables["items_late"].n_vectors == 160, "one per captioned image"
            assert items.metadata["fusion"] == {
                "inputs": ["image", "caption"],
                "mode": "intermediate",
                "image_weight": 0.7,
                "of": tuned.encoder_key,
            }
            # Each item is the weighted sum of the same model's image and caption vectors.
            model = recorded_encoder(tuned)
            for item_id, caption, _, image_id in rows[:5]:
                expected = fuse_vectors(
                    searcher.served.vector(tuned, image_id)[None], model.embed_texts([caption]), 0.7
                )[0]
                assert float(expected @ searcher.served.vector(items, item_id)) > 0.999

            # Late fusion served: a text query scores an item 0.7 cos(q, its image) + 0.3 cos(q, its caption).
            late = tables["items_late"]
            assert late.dim == 2 * tuned.dim and late.metadata["fusion"]["mode"] == "late"
            query = model.embed_texts(["a red circle in the top left"])[0]
            hit = searcher.search(text="a red circle in the top left", encoder="items_late", k=1)[0]
            image_id = next(r[3] for r in rows if r[2] == hit.path)
            caption = model.embed_texts([hit.text])[0]
            expected = 0.7 * searcher.served.vector(tuned, image_id) @ query + 0.3 * caption @ query
            assert abs((1 - hit.distance) - float(expected)) < 1e-3

        # A caption edited: that file's item is replaced, nothing else is.
        manifest = settings.sources[0] / "captions.csv"
        lines = list(csv.DictReader(manifest.open()))
        edited_path = str(settings.sources[0] / lines[0]["path"])
        lines[0]["caption"] = "a brand new description"
        with manifest.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["path", "caption", "label"])
            writer.writeheader()
            writer.writerows(lines)
        assert run_pipeline(settings, list(settings.sources), instance=instance).ok
        with Searcher(settings.db_path) as searcher:
            after = _item_rows(searcher, settings)
        changed = {r[2]: r for r in after}
        before = {r[2]: r for r in rows}
        assert (
            changed[edited_path][1] == "a brand new description" and changed[edited_path][0] != before[edited_path][0]
        )
        assert changed[edited_path][3] == before[edited_path][3], "the image chunk (and its vectors) stay"
        assert {p: r[0] for p, r in changed.items() if p != edited_path} == {
            p: r[0] for p, r in before.items() if p != edited_path
        }

        assert run_evaluation(settings, instance=instance).ok
    found = {r["encoder"]: r for r in latest_results(settings.layout.evaluations) if r["task"] == "item->item"}
    fitted = [name for name in found if name.startswith("items fitted w=")]
    expected = {"tuned image only", "tuned caption only", "items late w=0.7", "items intermediate w=0.7", "items"}
    assert expected <= set(found) and len(fitted) == 1 and "items_late" in found
    # The served vectors score as the variants computed from image and caption vectors, each in its mode.
    assert found["items"]["mrr"] == pytest.approx(found["items intermediate w=0.7"]["mrr"], abs=0.02)
    assert found["items_late"]["mrr"] == pytest.approx(found["items late w=0.7"]["mrr"], abs=0.02)
    assert all(0 <= r["recall@10"] <= 1 and r["n_queries"] > 0 for r in found.values())

    # Items like this one, from the CLI, by the file's path.
    config = settings.home / "mm_assets.yaml"
    config.write_text(
        f"home: {settings.home}\nsources: [{settings.sources[0]}]\nencoders:\n"
        f"  - {{name: clip, model: {settings.encoders[0].model}, batch_size: 32}}\n"
        "  - {name: tuned, batch_size: 32, fine_tune: {base: clip, epochs: 1, batch_size: 16}}\n"
        "  - {name: items, batch_size: 32, fuse: {of: tuned, image_weight: 0.7}}\n"
        "  - {name: items_late, batch_size: 32, fuse: {of: tuned, image_weight: 0.7, mode: late}}\n"
    )
    capsys.readouterr()
    args = ["--config", str(config), "search", "--like", edited_path, "--encoder", "items", "--k", "5", "--json"]
    assert main(args) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 5 and all(h["role"] == "item" for h in hits) and edited_path not in [h["path"] for h in hits]
    assert main(["--config", str(config), "search", "--like", "/nowhere.png", "--encoder", "items"]) == 2
