"""mm_assets/config.py: settings from the file and the environment, and the validation of each one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mm_assets.cli import main
from mm_assets.config import EncoderConfig, Settings
from mm_assets.config_loading import load_settings


def write_config(folder: Path, settings: dict) -> Path:
    path = folder / "mm_assets.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture(autouse=True)
def no_environment(monkeypatch):
    for name in ("MM_ASSETS_CONFIG", "MM_ASSETS_HOME", "MM_ASSETS_STORE", "MM_ASSETS_SOURCES", "MM_ASSETS_MODEL"):
        monkeypatch.delenv(name, raising=False)


INVALID = [
    ({"colour": "blue"}, "unknown settings"),
    ({"encoders": []}, "at least one encoder"),
    ({"encoders": [{"name": "a"}, {"name": "a"}]}, "encoder names must be unique"),
    ({"encoders": [{"name": "9lives"}]}, "must be letters, digits and '_', starting with a letter"),
    ({"encoders": [{"name": "a-b"}]}, "must be letters, digits and '_'"),
    ({"encoders": [{"name": "a", "dtype": "int4"}]}, "dtype must be one of"),
    ({"encoders": [{"name": "a", "modalities": ["smell"]}]}, "modalities must be a non-empty subset"),
    ({"encoders": [{"name": "a", "modalities": []}]}, "modalities must be a non-empty subset"),
    ({"encoders": [{"name": "t", "fine_tune": {"base": "a"}}, {"name": "a"}]}, "fine_tune.base must name a plain"),
    (
        {
            "encoders": [
                {"name": "a"},
                {"name": "t", "fine_tune": {"base": "a", "freeze_text": True, "freeze_vision": True}},
            ]
        },
        "freezing both towers",
    ),
    ({"encoders": [{"name": "a"}, {"name": "t", "fine_tune": {"base": "a", "epochs": 0}}]}, "epochs must be >= 1"),
    ({"encoders": [{"name": "a"}, {"name": "t", "fine_tune": {"base": "a", "batch_size": 1}}]}, "batch_size >= 2"),
    ({"default_encoder": "nope"}, "default_encoder 'nope' is not a configured encoder"),
    ({"chunking": {"max_tokens": 4}}, "max_tokens must be at least 8"),
    ({"chunking": {"overlap_tokens": 40}}, "overlap_tokens must be between 0 and half"),
    ({"chunking": {"text_strategy": "paragraph"}}, "text_strategy must be one of"),
    ({"chunking": {"semantic_percentile": 100}}, "semantic_percentile must be between 0 and 100"),
    ({"chunking": {"image_tiles": 1}}, "image_tiles must be 0 (off) or at least 2"),
    ({"chunking": {"video_every_seconds": 0}}, "video_every_seconds must be > 0"),
    ({"chunking": {"video_max_frames": 0}}, "video_max_frames >= 1"),
    ({"chunking": {"video_scene_threshold": 1.5}}, "video_scene_threshold must be between 0 and 1"),
    ({"chunking": {"audio_overlap_seconds": 10}}, "audio_overlap_seconds must be >= 0 and less than"),
    ({"executor": {"kind": "slurm"}}, "executor.kind must be one of"),
]


@pytest.mark.parametrize(("settings", "message"), INVALID, ids=[m for _, m in INVALID])
def test_each_invalid_setting_is_refused_with_what_is_expected(tmp_path, settings, message):
    with pytest.raises(ValueError) as error:
        load_settings(write_config(tmp_path, settings))
    assert message in str(error.value)


def test_a_missing_file_and_a_file_that_is_not_a_mapping_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_settings(tmp_path / "missing.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- home\n")
    with pytest.raises(ValueError, match="expected a mapping at the top level"):
        load_settings(listed)


def test_paths_in_the_file_are_relative_to_the_file_and_urls_stay_urls(tmp_path, tiny_clip):
    folder = tmp_path / "project"
    folder.mkdir()
    config = write_config(
        folder,
        {
            "home": "data",
            "sources": ["photos"],
            "store": "s3://bucket/prefix",
            "encoders": [{"name": "clip", "model": str(tiny_clip)}],
            "hnsw": True,
            "max_file_bytes": 1000,
        },
    )
    settings = load_settings(config)
    assert settings.home == folder / "data" and settings.sources == (folder / "photos",)
    assert settings.store_url == "s3://bucket/prefix" and settings.hnsw and settings.max_file_bytes == 1000
    assert settings.encoders[0].model == str(tiny_clip)


def test_the_environment_and_arguments_override_the_file(tmp_path, monkeypatch, tiny_clip, tiny_clip_other):
    config = write_config(tmp_path, {"home": "from_file", "encoders": [{"name": "clip", "model": str(tiny_clip)}]})
    monkeypatch.setenv("MM_ASSETS_HOME", str(tmp_path / "from_env"))
    monkeypatch.setenv("MM_ASSETS_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("MM_ASSETS_SOURCES", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    monkeypatch.setenv("MM_ASSETS_MODEL", str(tiny_clip_other))
    settings = load_settings(config)
    assert settings.home == tmp_path / "from_env" and settings.store_url == str(tmp_path / "store")
    assert settings.sources == (tmp_path / "a", tmp_path / "b")
    assert settings.default_encoder.model == str(tiny_clip_other)
    assert load_settings(config, home=tmp_path / "from_arg").home == tmp_path / "from_arg"


def test_the_default_encoder_is_the_first_unless_named(tmp_path):
    encoders = (EncoderConfig("a"), EncoderConfig("b"))
    assert Settings(home=tmp_path, encoders=encoders).default_encoder.name == "a"
    assert Settings(home=tmp_path, encoders=encoders, default_encoder_name="b").default_encoder.name == "b"


def test_a_fine_tuned_encoder_lives_in_the_home_folder_and_cannot_take_a_model_override(tmp_path, tiny_clip):
    settings = load_settings(
        write_config(
            tmp_path,
            {
                "home": "home",
                "encoders": [
                    {"name": "clip", "model": str(tiny_clip)},
                    {"name": "tuned", "fine_tune": {"base": "clip"}},
                ],
                "default_encoder": "tuned",
            },
        )
    )
    tuned = settings.encoder("tuned")
    assert Path(tuned.model) == tmp_path / "home" / "models" / "tuned" and tuned.base == settings.encoder("clip")
    assert settings.tokenizer_model == str(tiny_clip), "a fine-tuned model measures text in its base's tokens"
    with pytest.raises(ValueError, match="fine-tuned from 'clip'"):
        settings.with_model(str(tiny_clip))


def test_a_relative_model_override_becomes_an_absolute_path(tmp_path, monkeypatch, tiny_clip):
    monkeypatch.chdir(tiny_clip.parent)
    settings = Settings(home=tmp_path).with_model(f"./{tiny_clip.name}")
    assert settings.default_encoder.model == str(tiny_clip.resolve())


def test_mm_assets_config_says_where_each_setting_came_from(tmp_path, monkeypatch, capsys, tiny_clip, tiny_clip_other):
    config = tmp_path / "mm_assets.yaml"
    config.write_text(f"home: data\nencoders:\n- name: clip\n  model: {tiny_clip}\n  batch_size: 8\n")
    monkeypatch.setenv("MM_ASSETS_MODEL", str(tiny_clip_other))
    assert main(["--config", str(config), "config", "--json"]) == 0
    rows = {r["key"]: (r["value"], r["origin"]) for r in json.loads(capsys.readouterr().out)}
    assert rows["encoders.clip.model"] == (str(tiny_clip_other), f"env MM_ASSETS_MODEL (overrides {config})")
    assert rows["encoders.clip.batch_size"] == (8, str(config))
    assert rows["encoders.clip.dtype"] == ("auto", "default")
    assert rows["home"] == (str(tmp_path / "data"), str(config))
    assert rows["chunking.max_tokens"] == (77, "default")
