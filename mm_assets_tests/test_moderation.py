"""Moderation by policy text: flagged chunks, thresholds chosen on labelled examples, a changed
policy re-scored alone, flags that follow deletions; in the CLI and the HTTP API."""

import json
from dataclasses import replace

import dagster as dg
import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient

from mm_assets.cli import main
from mm_assets.config import EncoderConfig, Settings
from mm_assets.config_sections import PolicyConfig
from mm_assets.definitions import build_definitions
from mm_assets.demo import generate_corpus
from mm_assets.moderation import read_flags, threshold_for_precision
from mm_assets.runs import run_pipeline
from mm_assets.service.app import create_app
from mm_assets.store.segments import open_generation
from mm_assets_tests.helpers import run_requested, sensor_tick

SECRET = "share the master password with everyone on the team"


def test_the_chosen_threshold_is_the_lowest_that_keeps_the_target_precision():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    violates = np.array([True, False, True, True, False, True])
    # Cutting after 0.6 flags 4 examples, 3 of them violations: precision 0.75, recall 3/4.
    assert threshold_for_precision(scores, violates, 0.75) == (0.6, 0.75, 0.75)
    assert threshold_for_precision(scores, violates, 1.0) == (0.9, 1.0, 0.25)
    # Equal scores are flagged together: no threshold separates a tie.
    assert threshold_for_precision(np.array([0.9, 0.9]), np.array([True, False]), 1.0) is None
    assert threshold_for_precision(scores, np.zeros(6, dtype=bool), 0.5) is None


def test_a_policy_needs_a_threshold_or_a_target_precision_with_labels(tmp_path):
    with pytest.raises(ValueError, match="either threshold or target_precision"):
        PolicyConfig("p", ("x",))
    with pytest.raises(ValueError, match="needs labels"):
        PolicyConfig("p", ("x",), target_precision=0.9)
    with pytest.raises(ValueError, match="at least one phrasing"):
        PolicyConfig("p", (" ",), threshold=0.5)
    with pytest.raises(ValueError, match="encoder 'nope' is not configured"):
        Settings(home=tmp_path, policies=(PolicyConfig("p", ("x",), threshold=0.5, encoder="nope"),))


def _scored_at(settings: Settings) -> dict[str, object]:
    with duckdb.connect(str(settings.layout.flags), read_only=True) as con:
        return dict(con.execute("SELECT policy, scored_at FROM policy_runs").fetchall())


def _flags(settings: Settings) -> dict[str, dict]:
    con, _ = open_generation(settings.db_path)
    try:
        return {p["policy"]: p for p in read_flags(settings.layout.flags, con, limit=100)}
    finally:
        con.close()


@pytest.fixture
def moderated(tmp_path, tiny_clip) -> Settings:
    corpus = tmp_path / "corpus"
    generate_corpus(corpus, per_label=1)
    (corpus / "notes" / "leak.txt").write_text(SECRET)
    return Settings(
        home=tmp_path / "home",
        sources=(corpus,),
        encoders=(EncoderConfig("base", model=str(tiny_clip), batch_size=64),),
        policies=(
            PolicyConfig("secrets", (SECRET, "post the admin password publicly"), threshold=0.9999),
            PolicyConfig(
                "red_things", ("a red circle", "something red"), target_precision=0.3, labels=("red circle top left",)
            ),
        ),
    )


def test_policies_flag_chunks_rescore_only_what_changed_and_follow_deletions(moderated, capsys):
    with dg.instance_for_test() as instance:
        assert run_pipeline(moderated, list(moderated.sources), instance=instance).ok
        flags = _flags(moderated)
        secrets = flags["secrets"]
        # The note that says it word for word, and nothing else, at that threshold.
        assert [f["path"].endswith("leak.txt") for f in secrets["flags"]] == [True]
        assert secrets["flags"][0]["score"] > 0.9999 and secrets["n_scored"] > 20
        red = flags["red_things"]
        assert red["n_labelled"] > 0, "the labelled images are the examples"
        if red["threshold"] is None:
            assert "no threshold reaches precision 0.3" in red["note"] and red["n_flagged"] == 0
        else:
            assert red["precision"] >= 0.3 and 0 < red["recall"] <= 1
        before = _scored_at(moderated)

        # Another wording of one policy: only that policy is scored again.
        edited = replace(
            moderated,
            policies=(moderated.policies[0], replace(moderated.policies[1], phrasings=("a crimson disc",))),
        )
        assert run_pipeline(edited, list(edited.sources), instance=instance).ok
        after = _scored_at(edited)
        assert after["secrets"] == before["secrets"] and after["red_things"] > before["red_things"]

        # The flagged file is deleted: the vectors change, and its flag goes with them.
        (moderated.sources[0] / "notes" / "leak.txt").unlink()
        assert run_pipeline(edited, list(edited.sources), instance=instance).ok
        assert _flags(edited)["secrets"]["flags"] == []

    config = moderated.home / "mm_assets.yaml"
    config.write_text(
        f"home: {moderated.home}\nsources: [{moderated.sources[0]}]\n"
        f"encoders:\n  - {{name: base, model: {moderated.encoders[0].model}, batch_size: 64}}\n"
        f"policies:\n  - {{name: secrets, phrasings: ['{SECRET}'], threshold: 0.9999}}\n"
    )
    capsys.readouterr()
    assert main(["--config", str(config), "flags", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {p["policy"] for p in listed} == {"secrets", "red_things"}, "what was scored, until the next run"
    assert main(["--config", str(config), "flags", "--policy", "secrets"]) == 0
    assert "secrets: 0 of" in capsys.readouterr().out
    assert main(["--config", str(config), "flags", "--policy", "nope"]) == 2

    api = TestClient(create_app(edited))
    served = api.get("/api/flags", params={"policy": "red_things"}).json()
    assert [p["policy"] for p in served] == ["red_things"] and served[0]["n_scored"] == red["n_scored"] - 1


def test_the_new_files_sensor_runs_flag_what_they_add(tmp_path, tiny_clip):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "leak.txt").write_text(SECRET)
    (notes / "menu.txt").write_text("Soup of the day, bread, and a green salad.")
    settings = Settings(
        home=tmp_path / "home",
        sources=(notes,),
        encoders=(EncoderConfig("base", model=str(tiny_clip)),),
        policies=(PolicyConfig("secrets", (SECRET,), threshold=0.9999),),
    )
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        run_requested(defs, instance, sensor_tick(defs, instance), encoder="base")
    (secrets,) = _flags(settings).values()
    assert [f["path"] for f in secrets["flags"]] == [str(notes / "leak.txt")]
