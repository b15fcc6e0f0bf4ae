"""Search over all modalities with scores calibrated per (query modality, target modality): a mixed
list that is no longer all text, fitted by retrieval_eval and measured beside plain cosine."""

import json

import dagster as dg
import duckdb
import numpy as np
import pytest

from mm_assets.cli import main
from mm_assets.config import EncoderConfig, Settings
from mm_assets.demo import generate_corpus
from mm_assets.evaluation.calibration import fit_calibrations, fit_logistic, merged_ranking_figures
from mm_assets.evaluation.history import latest_results, record_results
from mm_assets.runs import run_evaluation, run_pipeline
from mm_assets.search.calibrated import read_calibrations
from mm_assets.search.query import Searcher
from mm_assets.store.tables import RETRIEVAL_EVAL_DDL


def _gapped(rng, labels: np.ndarray, offset: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """Unit vectors of one modality: a large offset all of them share (the modality gap) plus a
    smaller direction per label, plus noise."""
    v = 3.0 * offset + signal[labels] + 0.3 * rng.standard_normal((len(labels), offset.size))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_calibration_turns_an_all_text_mixed_list_into_a_mixed_one():
    rng = np.random.default_rng(0)
    dim, n_labels = 64, 12
    text_offset, image_offset = rng.standard_normal(dim), rng.standard_normal(dim)
    signal = rng.standard_normal((n_labels, dim))
    train = rng.integers(0, n_labels, 200)
    # An image and its caption share a row (and a label).
    items = {"text": _gapped(rng, train, text_offset, signal), "image": _gapped(rng, train, image_offset, signal)}
    fitted = fit_calibrations(items, train)
    assert set(fitted) == {(q, t) for q in ("text", "image") for t in ("text", "image")}
    text_to_text = items["text"] @ items["text"].T
    assert text_to_text.min() > (items["text"] @ items["image"].T).max(), "the gap the test builds"
    assert all(c.slope > 0 for c in fitted.values()), "a higher cosine, more likely relevant"

    labels = rng.integers(0, n_labels, 60)
    texts, images = _gapped(rng, labels, text_offset, signal), _gapped(rng, labels, image_offset, signal)
    relevant = labels[:, None] == labels[None, :]
    gallery = {"image": images, "text": texts}
    itself = {"text": np.eye(len(labels), dtype=bool), "image": np.zeros_like(relevant)}
    by_cosine = merged_ranking_figures(texts, gallery, {"image": relevant, "text": relevant}, itself, "text", None)
    calibrated = merged_ranking_figures(texts, gallery, {"image": relevant, "text": relevant}, itself, "text", fitted)
    assert by_cosine["images@10"] == 0.0 and by_cosine["texts@10"] == 1.0
    assert 0.25 < calibrated["images@10"] < 0.75
    assert calibrated["recall@10"] >= by_cosine["recall@10"]


def test_thefit_logistic_recovers_known_odds_and_keeps_order_where_cosine_says_nothing():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, 200_000)
    y = rng.uniform(size=x.size) < 1 / (1 + np.exp(-(8 * x - 2)))
    slope, intercept = fit_logistic(x, y.astype(float))
    assert abs(slope - 8) < 0.3 and abs(intercept + 2) < 0.1
    noise = rng.uniform(size=x.size) < 0.1  # relevance unrelated to the cosine
    slope, intercept = fit_logistic(x, noise.astype(float))
    assert slope > 0 and abs(intercept - np.log(0.1 / 0.9)) < 0.05


@pytest.fixture
def evaluated(tmp_path, tiny_clip) -> tuple[Settings, dict]:
    """Settings whose data is indexed and evaluated, and the retrieval_eval metadata."""
    corpus = tmp_path / "corpus"
    generate_corpus(corpus, per_label=2)
    settings = Settings(
        home=tmp_path / "home",
        sources=(corpus,),
        encoders=(EncoderConfig("base", model=str(tiny_clip), batch_size=64),),
        eval_test_percent=50,
    )
    with dg.instance_for_test() as instance:
        assert run_pipeline(settings, list(settings.sources), instance=instance).ok
        assert run_evaluation(settings, instance=instance).ok
        (record,) = instance.fetch_materializations(dg.AssetKey("retrieval_eval"), limit=1).records
    return settings, {k: v.value for k, v in record.asset_materialization.metadata.items()}


def test_search_over_all_modalities_ranks_by_calibrated_score(evaluated, capsys):
    evaluated, meta = evaluated
    results = {(r["encoder"], r["task"]): r for r in latest_results(evaluated.layout.evaluations)}
    assert {("base", "text->all"), ("base calibrated", "text->all"), ("base calibrated", "image->all")} <= set(results)
    assert "| text->all | base calibrated |" in meta["comparison"]
    assert meta["base/text->all/images@10"] < meta["base calibrated/text->all/images@10"]
    assert results[("base calibrated", "text->all")]["images@10"] == meta["base calibrated/text->all/images@10"]

    (key,) = [r["encoder_key"] for r in results.values()][:1]
    assert set(read_calibrations(evaluated.layout.calibrations, key)) >= {("text", "image"), ("text", "text")}
    query = "a red circle in the top left"
    with Searcher(evaluated.db_path, calibrations=evaluated.layout.calibrations) as searcher:
        by_cosine = searcher.search(text=query, k=5, calibrated=False)
        calibrated = searcher.search(text=query, k=5)
        only_images = searcher.search(text=query, k=5, modality="image")
    # The tiny model's modality gap: by cosine, every text outranks every image.
    assert {h.modality for h in by_cosine} == {"text"} and all(h.score is None for h in by_cosine)
    assert "image" in {h.modality for h in calibrated}
    scores = [h.score for h in calibrated]
    assert scores == sorted(scores, reverse=True)
    assert [h.chunk_id for h in calibrated if h.modality == "image"] == [h.chunk_id for h in only_images][
        : sum(h.modality == "image" for h in calibrated)
    ], "within a modality, calibration keeps the cosine order"

    config = evaluated.home / "mm_assets.yaml"
    config.write_text(
        f"home: {evaluated.home}\nsources: [{evaluated.sources[0]}]\neval_test_percent: 50\n"
        f"encoders:\n  - {{name: base, model: {evaluated.encoders[0].model}, batch_size: 64}}\n"
    )
    capsys.readouterr()
    assert main(["--config", str(config), "search", query, "--k", "5", "--json"]) == 0
    assert [h["chunk_id"] for h in json.loads(capsys.readouterr().out)] == [h.chunk_id for h in calibrated]
    assert main(["--config", str(config), "search", query, "--k", "5", "--json", "--uncalibrated"]) == 0
    assert [h["chunk_id"] for h in json.loads(capsys.readouterr().out)] == [h.chunk_id for h in by_cosine]


def test_an_older_evaluation_history_gains_the_new_column(tmp_path):
    path = tmp_path / "evaluations.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(RETRIEVAL_EVAL_DDL)  # the table as the first version wrote it
    result = {"encoder": "e calibrated", "encoder_key": "k", "task": "text->all", "recall@1": 0.5, "images@10": 0.3}
    record_results(path, [result], {"k": {"fingerprint": "f", "model_id": "m", "revision": "r"}}, "run-1")
    (row,) = latest_results(path)
    assert (row["recall@1"], row["images@10"], row["encoder"]) == (0.5, 0.3, "e calibrated")
