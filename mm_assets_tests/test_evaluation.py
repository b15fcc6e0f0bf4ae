"""Labels, the content-hash split, fine-tuning lineage and determinism, and evaluation side by side."""

import hashlib
import json

import dagster as dg
import numpy as np
import pytest

from mm_assets.cli import main
from mm_assets.config import EncoderConfig, FineTuneConfig, Settings
from mm_assets.demo import generate_corpus
from mm_assets.evaluation.history import latest_results
from mm_assets.evaluation.retrieval import in_test_split
from mm_assets.runs import run_evaluation, run_pipeline
from mm_assets_tests.helpers import db_rows

METRICS = {"encoder", "task", "recall@1", "recall@5", "recall@10", "mrr", "ndcg@10", "n_queries", "chance@1"}


def test_the_split_is_fixed_by_content_hash():
    ids = [hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest() for i in range(1000)]
    split = [in_test_split(fid, 20) for fid in ids]
    assert split == [in_test_split(fid, 20) for fid in ids]
    assert 0.15 < np.mean(split) < 0.25


@pytest.fixture
def labelled(tmp_path, tiny_clip) -> Settings:
    corpus = tmp_path / "corpus"
    generate_corpus(corpus, per_label=2)
    return Settings(
        home=tmp_path / "home",
        sources=(corpus,),
        encoders=(
            EncoderConfig("base", model=str(tiny_clip), batch_size=64),
            EncoderConfig("tuned", batch_size=64, fine_tune=FineTuneConfig(base="base", epochs=1, batch_size=16)),
        ),
        eval_test_percent=50,
    )


def test_fine_tuned_encoder_is_trained_embedded_and_evaluated_beside_its_base(labelled, capsys):
    with dg.instance_for_test() as instance:
        summary = run_pipeline(labelled, list(labelled.sources), instance=instance)
        assert summary.ok and summary.trained == ["fine_tuned/tuned"]
        assert run_evaluation(labelled, instance=instance).ok
        (record,) = instance.fetch_materializations(dg.AssetKey("retrieval_eval"), limit=1).records
        meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}

    # lineage: the fine-tuned table records its base and its training
    rows = db_rows(labelled, "SELECT name, revision, metadata FROM encoders ORDER BY name")
    (_, base_revision, _), (_, tuned_revision, tuned_meta) = rows
    lineage = json.loads(tuned_meta)["lineage"]
    assert lineage["base_revision"] == base_revision and lineage["revision"] == tuned_revision
    assert lineage["data_fingerprint"] and lineage["steps"] > 0 and lineage["wall_seconds"] > 0

    # both encoders, every task, in the history table and as floats in the UI metadata
    results = latest_results(labelled.layout.evaluations)
    tasks = ("text->image", "image->text", "text->text", "image->image")
    mixed = (f"{e}{calibrated}" for e in ("base", "tuned") for calibrated in ("", " calibrated"))
    assert {(r["encoder"], r["task"]) for r in results} == {(e, t) for e in ("base", "tuned") for t in tasks} | {
        (e, f"{q}->all") for e in mixed for q in ("text", "image")
    }
    assert all(METRICS <= set(r) and r["fingerprint"] for r in results)
    assert isinstance(meta["tuned/text->image/recall@1"], float) and isinstance(meta["base/image->text/mrr"], float)
    assert "| text->image | base |" in meta["comparison"] and "| text->image | tuned |" in meta["comparison"]


def test_eval_command_prints_one_object_per_encoder_and_task(labelled, capsys, tmp_path):
    config = tmp_path / "mm_assets.yaml"
    config.write_text(f"""
home: {labelled.home}
sources: [{labelled.sources[0]}]
eval_test_percent: 50
encoders:
  - {{name: base, model: {labelled.encoders[0].model}}}
  - {{name: other, model: {labelled.encoders[0].model}, dtype: bfloat16}}
""")
    assert main(["--config", str(config), "run"]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "eval", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert {r["encoder"] for r in results} == {"base", "other", "base calibrated", "other calibrated"}
    assert all(METRICS <= set(r) for r in results)
    assert all(0 <= r["recall@1"] <= r["recall@5"] <= r["recall@10"] <= 1 for r in results)
    assert main(["--config", str(config), "eval"]) == 0
    assert "| task | encoder | recall@1" in capsys.readouterr().out


def test_demo_runs_end_to_end_offline_and_later_commands_need_no_config(tmp_path, capsys, monkeypatch):
    # a scaled-down demo (the full one trains for ~2 minutes; its figures are in the README), run as a
    # new user runs it: in a folder of their own, without options
    monkeypatch.chdir(tmp_path)
    code = main(["demo", "--per-label", "1", "--epochs", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| text->image | demo_tuned |" in out and "| text->image | demo_base |" in out
    assert "search 'a red circle in the top left'" in out
    assert (tmp_path / ".mm_assets" / "demo" / "mm_assets.yaml").exists()
    assert (tmp_path / "mm_assets.yaml").exists(), "the demo's settings where every command looks"
    assert '\n  mm-assets search "a green cross"\n' in out, "the commands it prints need no --config"

    # the README's next commands, exactly as printed
    assert main(["search", "a green cross", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and all(h["encoder"].startswith("demo_tuned_") for h in hits)
    assert main(["status"]) == 0 and "demo_tuned" in capsys.readouterr().out
    assert main(["eval", "--json"]) == 0 and json.loads(capsys.readouterr().out)


def test_a_second_demo_keeps_the_users_own_settings(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mm_assets.yaml").write_text("home: mine\n")
    assert main(["demo", "--per-label", "1", "--epochs", "1"]) == 0
    assert (tmp_path / "mm_assets.yaml").read_text() == "home: mine\n"
    demo_config = tmp_path / ".mm_assets" / "demo" / "mm_assets.yaml"
    assert f'mm-assets --config {demo_config} search "a green cross"' in capsys.readouterr().out
