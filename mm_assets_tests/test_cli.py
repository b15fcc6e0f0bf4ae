"""The CLI as a user runs it: run, search --json, status, and its errors."""

import json
import time

import dagster as dg
import numpy as np
import pytest

from mm_assets.cli import main
from mm_assets_tests.helpers import db_rows, stored_vectors


@pytest.fixture
def cli(tmp_path, tiny_clip):
    base = ["--home", str(tmp_path / "home"), "--model", str(tiny_clip)]

    def call(*args):
        return main([*base, *map(str, args)])

    return call


def test_run_then_search_and_status(cli, source, bad_reasons, capsys, dagster_home):
    assert cli("run", source) == 0
    out = capsys.readouterr().out
    assert "new batch: b" in out and "vector tables updated" in out

    # the runs are recorded in the Dagster instance under DAGSTER_HOME, so the UI shows them
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_run_records()
        assert len(runs) == 2 and all(r.dagster_run.is_success for r in runs)
        assert instance.get_latest_materialization_event(dg.AssetKey("vector_tables")) is not None

    assert cli("search", "a dog on a beach", "--k", "5", "--json") == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 5 and {"path", "chunk_id", "modality", "distance"} <= set(hits[0])
    assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)

    photo = source / "images" / "photo.jpg"
    assert cli("search", "--image", photo, "--modality", "image", "--json") == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["path"] == str(photo) and hits[0]["distance"] < 1e-4
    assert {h["modality"] for h in hits} == {"image"}

    assert cli("status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["batches"] == 1 and len(status["quarantined"]) == len(bad_reasons)
    assert status["encoders"][0]["default"] is True

    # nothing new: no new batch, nothing re-embedded
    assert cli("run", source) == 0
    assert "no files added, edited or deleted" in capsys.readouterr().out


def test_cli_top_k_equals_numpy_brute_force(cli, source, tmp_path, capsys):
    assert cli("run", source) == 0
    capsys.readouterr()
    photo = source / "images" / "rotated.jpg"
    assert cli("search", "--image", photo, "--k", "8", "--json") == 0
    hits = json.loads(capsys.readouterr().out)

    from mm_assets.config_loading import load_settings

    settings = load_settings(home=tmp_path / "home")
    table = db_rows(settings, "SELECT table_name FROM encoders")[0][0]
    ids, vectors = stored_vectors(settings, table)
    query = vectors[ids.index(hits[0]["chunk_id"])]  # the photo is in the corpus: its stored vector is the query
    distances = 1 - vectors @ query
    expected = [ids[i] for i in sorted(range(len(ids)), key=lambda i: (distances[i], ids[i]))[:8]]
    assert [h["chunk_id"] for h in hits] == expected
    assert np.allclose([h["distance"] for h in hits], sorted(distances)[:8], atol=1e-5)


def test_model_override_builds_a_second_table_beside_the_first(cli, source, tiny_clip_other, tmp_path, capsys):
    assert cli("run", source) == 0
    assert main(["--home", str(tmp_path / "home"), "--model", str(tiny_clip_other), "run", str(source)]) == 0
    out = capsys.readouterr().out
    assert "no files added, edited or deleted" in out and "materialized batch" in out
    assert cli("status", "--json") == 0
    encoders = json.loads(capsys.readouterr().out)["encoders"]
    assert len(encoders) == 2 and len({e["model"] for e in encoders}) == 2


def test_search_before_any_run_explains_what_to_do(cli, capsys):
    assert cli("search", "anything") == 2
    assert "mm-assets run" in capsys.readouterr().err


def test_a_run_over_an_empty_folder_succeeds_and_builds_nothing(cli, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli("run", tmp_path / "empty") == 0
    out = capsys.readouterr().out
    assert "no files added, edited or deleted" in out and "FAILED" not in out
    assert cli("search", "anything") == 2 and "mm-assets run" in capsys.readouterr().err


def test_a_missing_model_fails_fast_with_one_clear_error(tmp_path, source, capsys):
    start = time.monotonic()
    code = main(["--home", str(tmp_path / "home"), "--model", str(tmp_path / "nope"), "run", str(source)])
    assert code == 2 and time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert "does not exist" in err and "save_pretrained" in err and "HF_HUB_OFFLINE" in err
    assert not (tmp_path / "home" / "manifests").exists(), "fails before any work is started"


def test_a_failed_rebuild_is_not_reported_as_up_to_date():
    from mm_assets.runs import RunSummary

    lines = RunSummary(new_batch=None, failed_runs=["vector_tables"]).lines()
    assert any("run FAILED: vector_tables" in line for line in lines)
    assert not any("up to date" in line for line in lines)


CONFIG_MISTAKES = [
    ("max_file_bytes: 512MB\n", "max_file_bytes: Input should be a valid integer", "512MB"),
    ("home: [unclosed\n", "not valid YAML", ""),
    ("encoders:\n  - {name: clip, batchsize: 8}\n", "encoders.0.batchsize: unknown key", ""),
    ("chunking: {max_token: 60}\n", "chunking.max_token: unknown key", ""),
    ("encoders: {clip: {model: x}}\n", "encoders: Input should be a valid list", ""),
    ("sources: /data/photos\n", "sources: Input should be a valid list", "/data/photos"),
    ("hnsw: maybe\n", "hnsw: Input should be a valid boolean", "maybe"),
    ("encoders:\n  - {name: clip, fine_tune: {base: clip, epochs: two}}\n", "encoders.0.fine_tune.epochs", "two"),
]


@pytest.mark.parametrize(("text", "message", "given"), CONFIG_MISTAKES, ids=[m for _, m, _ in CONFIG_MISTAKES])
def test_a_config_mistake_is_one_error_line_naming_the_key(tmp_path, capsys, text, message, given):
    config = tmp_path / "mm_assets.yaml"
    config.write_text(text)
    assert main(["--config", str(config), "status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mm-assets: error: ") and "Traceback" not in err
    assert str(config) in err and message in err and given in err


def test_bad_query_files_and_folders_are_one_error_line(cli, source, tmp_path, tiny_clip, capsys, monkeypatch):
    assert cli("run", source) == 0
    capsys.readouterr()
    for args, message in (
        (("search", "--image", tmp_path / "missing.jpg"), "--image"),
        (("search", "--image", source / "texts" / "guide.md"), "not a recognised image format"),
    ):
        assert cli(*args) == 2
        err = capsys.readouterr().err
        (line,) = [line for line in err.splitlines() if "error" in line.lower()]
        assert line.startswith("mm-assets: error: ") and message in line and str(args[-1]) in line, err
    (tmp_path / "a_file").write_text("")
    assert main(["--home", str(tmp_path / "a_file" / "home"), "--model", str(tiny_clip), "run", str(source)]) == 2
    assert "Not a directory" in capsys.readouterr().err
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "no_such_folder"))
    assert cli("run", source) == 2
    assert "DAGSTER_HOME" in capsys.readouterr().err


def test_an_empty_home_says_what_to_run(tmp_path, capsys):
    for command in (["eval"], ["search", "a dog"], ["status"]):
        assert main(["--home", str(tmp_path / "empty"), *command]) == 2
        assert "build it with `mm-assets run DIR`" in capsys.readouterr().err


def test_options_work_before_or_after_the_subcommand(tmp_path, source, tiny_clip, capsys):
    assert main(["run", "--home", str(tmp_path / "home"), "--model", str(tiny_clip), str(source)]) == 0
    assert "vector tables updated" in capsys.readouterr().out
    assert main(["--home", str(tmp_path / "home"), "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"] > 0
    assert main(["status", "--json", "--home", str(tmp_path / "home")]) == 0
    assert json.loads(capsys.readouterr().out)["files"] > 0
