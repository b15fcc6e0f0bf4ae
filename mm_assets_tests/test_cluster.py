"""The cluster path: executors chosen by configuration, shards on a filesystem URL instead of the home."""

from dataclasses import replace

import dagster as dg
import pytest
import yaml

from mm_assets.config_loading import load_settings
from mm_assets.definitions import INGEST_JOB, build_definitions
from mm_assets.encoders.identity import encoder_key
from mm_assets.search.query import search
from mm_assets.store.shards import ShardStore
from mm_assets_tests.helpers import db_rows, ingest_with_dagster


@pytest.mark.parametrize(
    ("kind", "config", "executor_name"),
    [
        ("k8s", {"job_namespace": "mm-assets", "env_vars": ["MM_ASSETS_STORE"]}, "k8s"),
        ("docker", {"image": "registry.example/mm-assets:1", "env_vars": ["MM_ASSETS_STORE"]}, "docker"),
        ("multiprocess", {"max_concurrent": 2}, "multiprocess"),
    ],
)
def test_the_same_definitions_load_with_the_executor_the_config_names(tmp_path, tiny_clip, kind, config, executor_name):
    config_file = tmp_path / "mm_assets.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "home": "home",
                "store": "s3://bucket/mm",
                "encoders": [{"name": "clip", "model": str(tiny_clip)}],
                "executor": {"kind": kind, "config": config},
            }
        )
    )
    settings = load_settings(config_file)
    defs = build_definitions(settings)
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def(INGEST_JOB).executor_def.name == executor_name
    assert settings.store_url == "s3://bucket/mm", "a URL is kept as it is, not made a local path"


def test_an_unknown_executor_is_refused_with_the_choices(tmp_path):
    config_file = tmp_path / "mm_assets.yaml"
    config_file.write_text(yaml.safe_dump({"executor": {"kind": "slurm"}}))
    with pytest.raises(ValueError, match="executor.kind must be one of"):
        load_settings(config_file)


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_the_pipeline_runs_with_its_shards_behind_a_filesystem_url(settings, tmp_path, scheme):
    """file:// stands in for object storage; memory:// is a filesystem DuckDB cannot open by path,
    so the vector tables must come through the store's Arrow datasets."""
    url = f"file://{tmp_path}/bucket/mm" if scheme == "file" else f"memory://{tmp_path.name}/mm"
    remote = replace(settings, store_url=url)
    with dg.instance_for_test() as instance:
        batch, result = ingest_with_dagster(remote, instance)
    assert result.success

    store = ShardStore(url)
    assert store.exists(store.manifest(batch))
    for asset in ("raw_files", "chunks"):
        assert store.list(store.shard_dir(asset)) == [store.shard(asset, batch)]
    assert store.list(store.shard_dir("embeddings", encoder_key(remote.default_encoder)))
    assert not (settings.home / "shards").exists() and not (settings.home / "manifests").exists()

    # The served data is the same as with shards in the home folder.
    images = sorted((settings.sources[0] / "images").iterdir())
    hits = search(remote.db_path, image=images[0], k=1, default_key=encoder_key(remote.default_encoder))
    assert hits[0].path == str(images[0]) and hits[0].distance < 1e-4
    n_chunks = db_rows(remote, "SELECT count(*) FROM chunks")[0][0]
    assert n_chunks == store.read_table(store.shard("chunks", batch)).num_rows
