"""The sensor: new and changed files become one batch; only that work runs; nothing is re-embedded."""

import json
import os
from dataclasses import replace

import dagster as dg

from mm_assets.config import EncoderConfig
from mm_assets.definitions import build_definitions
from mm_assets_tests.corpus import gradient
from mm_assets_tests.helpers import db_rows, run_requested, sensor_tick


def test_sensor_picks_up_new_and_changed_files_only(settings):
    defs = build_definitions(settings)
    src = settings.sources[0]
    with dg.instance_for_test() as instance:
        first = sensor_tick(defs, instance)
        assert isinstance(first, dg.SensorResult)
        meta = run_requested(defs, instance, first)
        n_first = meta["embedded"]
        assert n_first > 0 and meta["already_embedded"] == 0

        assert isinstance(sensor_tick(defs, instance), dg.SkipReason), "nothing new: no batch"

        gradient(90, 70, seed=42).save(src / "images" / "new.png")
        os.rename(src / "images" / "photo.jpg", src / "images" / "renamed.jpg")
        second = sensor_tick(defs, instance)
        meta = run_requested(defs, instance, second)
        assert meta["chunks_in_batch"] == 2
        assert meta["embedded"] == 1, "only the new image is embedded"
        assert meta["already_embedded"] == 1, "the renamed file costs no embedding"

    paths = {r[0] for r in db_rows(settings, "SELECT path FROM files")}
    assert str(src / "images" / "renamed.jpg") in paths and str(src / "images" / "new.png") in paths
    assert str(src / "images" / "photo.jpg") not in paths
    table = db_rows(settings, "SELECT table_name FROM encoders")[0][0]
    assert db_rows(settings, f"SELECT count(*) FROM {table}")[0][0] == n_first + 1


def test_an_edited_file_replaces_its_old_content(settings):
    defs = build_definitions(settings)
    note = settings.sources[0] / "texts" / "long.txt"
    with dg.instance_for_test() as instance:
        run_requested(defs, instance, sensor_tick(defs, instance))
        note.write_text("completely different words about mountains")
        meta = run_requested(defs, instance, sensor_tick(defs, instance))
        assert meta["embedded"] == 1
    texts = [
        r[0]
        for r in db_rows(
            settings, "SELECT c.text FROM chunks c JOIN files f USING (file_id) WHERE f.path = ?", [str(note)]
        )
    ]
    assert texts == ["completely different words about mountains"]


def test_sensor_without_sources_skips_with_a_reason(settings):
    from dataclasses import replace

    defs = build_definitions(replace(settings, sources=()))
    with dg.instance_for_test() as instance:
        result = sensor_tick(defs, instance)
    assert isinstance(result, dg.SkipReason) and "no source folders" in result.skip_message


def test_after_an_encoder_edit_the_stale_sensor_fails_its_check_and_reruns_every_batch(settings, tiny_clip_other):
    with dg.instance_for_test() as instance:
        defs = build_definitions(settings)
        first = sensor_tick(defs, instance)
        run_requested(defs, instance, first)
        cursor = json.loads(first.cursor)
        assert cursor["added"] > 0 and cursor["last_batch"] == first.run_requests[0].partition_key
        assert sensor_tick(defs, instance, "stale_assets_sensor").run_requests == []

        edited = build_definitions(
            replace(settings, encoders=(EncoderConfig("clip", model=str(tiny_clip_other), batch_size=4),))
        )
        tick = sensor_tick(edited, instance, "stale_assets_sensor")
        (request,) = tick.run_requests
        assert request.partition_key == cursor["last_batch"]
        assert request.asset_selection == [dg.AssetKey(["embeddings", "clip"]), dg.AssetKey("vector_tables")]
        verdicts = {e.asset_key.to_user_string(): e.passed for e in tick.asset_events}
        assert verdicts["embeddings/clip"] is False and verdicts["chunks"] is True

        rerun = edited.resolve_job_def("ingest_job").execute_in_process(
            partition_key=request.partition_key, asset_selection=request.asset_selection, instance=instance
        )
        assert rerun.success
        after = sensor_tick(edited, instance, "stale_assets_sensor", cursor=tick.cursor)
        assert after.run_requests == []
        assert [(e.asset_key.to_user_string(), e.passed) for e in after.asset_events] == [("embeddings/clip", True)]
