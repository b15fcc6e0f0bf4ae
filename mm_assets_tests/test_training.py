"""mm_assets/training: contrastive fine-tuning, deterministic, with lineage."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mm_assets.config import FineTuneConfig
from mm_assets.encoders.resolve import resolve_model, weights_hash
from mm_assets.training.contrastive import TrainingPair, fine_tune


def _pairs(n: int) -> list[TrainingPair]:
    rng = np.random.default_rng(0)
    return [
        TrainingPair(f"{i:032x}", rng.normal(size=(3, 32, 32)).astype(np.float32), f"caption {i % 3}", f"label {i % 3}")
        for i in range(n)
    ]


def test_fine_tuning_is_deterministic_and_records_lineage(tiny_clip, tmp_path):
    base = resolve_model(str(tiny_clip))
    config = FineTuneConfig(base="clip", epochs=2, learning_rate=1e-3, batch_size=4, seed=7)
    first = fine_tune(base, _pairs(10), config, tmp_path / "a", log=lambda _: None)
    second = fine_tune(base, list(reversed(_pairs(10))), config, tmp_path / "b", log=lambda _: None)
    assert first.revision == second.revision == weights_hash(tmp_path / "b")
    assert first.revision != base.revision
    other_seed = fine_tune(base, _pairs(10), replace(config, seed=8), tmp_path / "c", log=lambda _: None)
    assert other_seed.revision != first.revision
    lineage = first.lineage(base, config)
    assert lineage["base_revision"] == base.revision and lineage["steps"] == 6
    assert len(lineage["loss_curve"]) == 2 and lineage["hyperparameters"]["seed"] == 7


def test_freezing_a_tower_leaves_its_weights_untouched(tiny_clip, tmp_path):
    from safetensors.numpy import load_file

    base = resolve_model(str(tiny_clip))
    config = FineTuneConfig(base="clip", epochs=1, learning_rate=1e-2, batch_size=4, freeze_text=True)
    fine_tune(base, _pairs(8), config, tmp_path / "ft", log=lambda _: None)
    before, after = load_file(tiny_clip / "model.safetensors"), load_file(tmp_path / "ft" / "model.safetensors")
    text = [k for k in before if k.startswith(("text_model.", "text_projection"))]
    vision = [k for k in before if k.startswith("vision_model.")]
    assert all(np.array_equal(before[k], after[k]) for k in text)
    assert any(not np.array_equal(before[k], after[k]) for k in vision)
