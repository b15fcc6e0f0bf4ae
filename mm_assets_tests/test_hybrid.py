"""Hybrid search: BM25 over the text chunks (DuckDB's full-text index, one per segment) fused with
the vector ranking by reciprocal rank fusion; rare words found that vectors alone miss, deleted
files gone from both, and retrieval_eval's rare-token task measuring the difference."""

import json

import dagster as dg
import numpy as np
import pytest

from mm_assets.cli import main
from mm_assets.config import EncoderConfig, Settings
from mm_assets.evaluation.history import latest_results
from mm_assets.runs import run_evaluation, run_pipeline
from mm_assets.search.query import Searcher

CODES = [f"QZ{n:04d}X" for n in np.random.default_rng(0).choice(10_000, 16, replace=False)]


def _log_entry(code: str) -> str:
    return (
        f"Maintenance log entry. The replacement part ordered today is {code}. It ships with the "
        "standard packaging, the usual paperwork and a printed invoice for the workshop."
    )


@pytest.fixture
def logs(tmp_path, tiny_clip) -> Settings:
    corpus = tmp_path / "logs"
    corpus.mkdir()
    for i, code in enumerate(CODES):
        (corpus / f"entry_{i:02d}.txt").write_text(_log_entry(code))
    settings = Settings(
        home=tmp_path / "home", sources=(corpus,), encoders=(EncoderConfig("base", model=str(tiny_clip)),)
    )
    with dg.instance_for_test() as instance:
        assert run_pipeline(settings, list(settings.sources), instance=instance).ok
    return settings


def _top_paths(settings: Settings, code: str, hybrid: bool) -> list[str]:
    with Searcher(settings.db_path) as searcher:
        return [h.path for h in searcher.search(text=code, k=3, modality="text", hybrid=hybrid)]


def test_hybrid_search_finds_the_rare_word_that_vectors_alone_miss(logs, capsys):
    expected = {code: str(logs.sources[0] / f"entry_{i:02d}.txt") for i, code in enumerate(CODES)}
    hybrid_first = [_top_paths(logs, code, hybrid=True)[0] == path for code, path in expected.items()]
    vector_first = [_top_paths(logs, code, hybrid=False)[0] == path for code, path in expected.items()]
    assert all(hybrid_first), "every code's own entry first"
    assert sum(vector_first) < len(CODES) / 2, "the tiny model cannot tell the codes apart"

    with Searcher(logs.db_path) as searcher:
        hits = searcher.search(text=CODES[0], k=5, hybrid=True)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 2 / 61 for s in scores)
    assert all(h.distance >= 0 for h in hits), "each hit keeps its cosine distance"

    config = logs.home / "mm_assets.yaml"
    encoder = f"{{name: base, model: {logs.encoders[0].model}}}"
    config.write_text(f"home: {logs.home}\nsources: [{logs.sources[0]}]\nencoders:\n  - {encoder}\n")
    capsys.readouterr()
    assert main(["--config", str(config), "search", CODES[3], "--hybrid", "--json", "--k", "1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["path"] == expected[CODES[3]]


def test_a_deleted_file_leaves_the_text_index_with_its_vectors(logs):
    gone = logs.sources[0] / "entry_05.txt"
    gone.unlink()
    with dg.instance_for_test() as instance:
        assert run_pipeline(logs, list(logs.sources), instance=instance).ok
    assert str(gone) not in _top_paths(logs, CODES[5], hybrid=True)
    # A new file is indexed with the rows its update adds.
    (logs.sources[0] / "late.txt").write_text(_log_entry("QZLATE77"))
    with dg.instance_for_test() as instance:
        assert run_pipeline(logs, list(logs.sources), instance=instance).ok
    assert _top_paths(logs, "QZLATE77", hybrid=True)[0] == str(logs.sources[0] / "late.txt")


def test_retrieval_eval_measures_hybrid_against_vectors_on_rare_words(logs):
    with dg.instance_for_test() as instance:
        assert run_evaluation(logs, instance=instance).ok
    rows = {r["encoder"]: r for r in latest_results(logs.layout.evaluations) if r["task"] == "rare-token->text"}
    assert set(rows) == {"base", "base hybrid"}
    assert rows["base hybrid"]["n_queries"] == len(CODES)
    assert rows["base hybrid"]["recall@1"] == 1.0 > rows["base"]["recall@1"]
