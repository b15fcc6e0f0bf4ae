"""Changing an encoder's model: exactly its assets go stale; old and new tables live side by side."""

from dataclasses import replace

import dagster as dg

from mm_assets.config import EncoderConfig
from mm_assets.definitions import build_definitions
from mm_assets.encoders.identity import encoder_key
from mm_assets.encoders.resolve import weights_hash
from mm_assets.runs import run_pipeline
from mm_assets.search.query import search
from mm_assets.staleness import find_stale
from mm_assets_tests.helpers import db_rows, ingest_with_dagster


def stale_by_code_version(defs: dg.Definitions, instance: dg.DagsterInstance) -> set[str]:
    """Assets with a batch materialized under another code version than they have now."""
    return {key.to_user_string() for key in find_stale(defs.resolve_asset_graph(), instance)}


def test_changing_a_model_marks_only_its_encoder_stale_and_keeps_both_tables(settings, tiny_clip, tiny_clip_other):
    before = replace(
        settings,
        encoders=(EncoderConfig("clip", model=str(tiny_clip)), EncoderConfig("other", model=str(tiny_clip_other))),
    )
    after = replace(before, encoders=(before.encoders[0], EncoderConfig("other", model=str(tiny_clip))))
    with dg.instance_for_test() as instance:
        batch, first = ingest_with_dagster(before, instance)
        assert first.success
        new_defs = build_definitions(after)
        assert stale_by_code_version(new_defs, instance) == {"embeddings/other"}

        rerun = new_defs.resolve_job_def("ingest_job").execute_in_process(
            partition_key=batch,
            instance=instance,
            asset_selection=[dg.AssetKey(["embeddings", "other"]), dg.AssetKey("vector_tables")],
        )
        assert rerun.success
        assert stale_by_code_version(new_defs, instance) == set()

    rows = db_rows(
        after,
        "SELECT name, encoder_key, fingerprint, model_id, revision, embedding_dim, is_current, n_vectors "
        "FROM encoders WHERE name = 'other' ORDER BY is_current",
    )
    (old, new) = rows
    assert old[1] == encoder_key(before.encoders[1]) and new[1] == encoder_key(after.encoders[1]) and old[1] != new[1]
    assert (old[3], old[4], old[5], old[6]) == (str(tiny_clip_other), weights_hash(tiny_clip_other), 24, False)
    assert (new[3], new[4], new[5], new[6]) == (str(tiny_clip), weights_hash(tiny_clip), 16, True)
    n_chunks = db_rows(after, "SELECT count(*) FROM chunks")[0][0]
    assert old[7] == new[7] == n_chunks
    # both tables hold vectors, each traceable to the fingerprint that produced it
    for _, key, fingerprint, *_ in rows:
        assert key.endswith(fingerprint)
        assert db_rows(after, f"SELECT count(*) FROM emb_{key}")[0][0] == n_chunks

    # search embeds with the model recorded for the table, whatever the config says now
    photo = after.sources[0] / "images" / "photo.jpg"
    for key in (old[1], new[1]):
        hits = search(after.db_path, image=photo, k=1, encoder=key)
        assert hits[0].path == str(photo) and hits[0].distance < 1e-4 and hits[0].encoder == key
    assert search(after.db_path, image=photo, k=1, encoder="other")[0].encoder == new[1]


def test_changing_the_text_strategy_rechunks_and_reembeds_only_text(settings):
    after = replace(settings, chunking=replace(settings.chunking, text_strategy="sentence"))
    with dg.instance_for_test() as instance:
        batch, first = ingest_with_dagster(settings, instance)
        assert first.success
        old_text = {r[0] for r in db_rows(settings, "SELECT chunk_id FROM chunks WHERE modality = 'text'")}
        images = {r[0] for r in db_rows(settings, "SELECT chunk_id FROM chunks WHERE modality = 'image'")}
        new_defs = build_definitions(after)
        assert stale_by_code_version(new_defs, instance) == {"chunks"}

        rerun = new_defs.resolve_job_def("ingest_job").execute_in_process(
            partition_key=batch,
            instance=instance,
            asset_selection=[dg.AssetKey("chunks"), dg.AssetKey(["embeddings", "clip"]), dg.AssetKey("vector_tables")],
        )
        assert rerun.success and stale_by_code_version(new_defs, instance) == set()
    meta = rerun.asset_materializations_for_node("embeddings__clip")[0].metadata
    new_text = {r[0] for r in db_rows(after, "SELECT chunk_id FROM chunks WHERE modality = 'text'")}
    assert new_text and new_text.isdisjoint(old_text), "the strategy is part of every text chunk id"
    assert {r[0] for r in db_rows(after, "SELECT chunk_id FROM chunks WHERE modality = 'image'")} == images
    # content addressing: the images keep their vectors, only the new text windows are embedded
    assert meta["already_embedded"].value == len(images) and meta["embedded"].value == len(new_text)


def test_a_model_change_followed_in_the_ui_keeps_the_old_table_whole_and_run_heals(settings, tiny_clip_other):
    """The steps of a UI user who edits the default encoder's model (to one with the same tokenizer):
    the asset-level `up_to_date` check names the stale encoder; rematerializing chunks and the vector
    tables (what "Unsynced" used to suggest) loses nothing; `mm-assets run` re-embeds every batch."""
    after = replace(settings, encoders=(EncoderConfig("clip", model=str(tiny_clip_other), batch_size=4),))
    old_key, new_key = encoder_key(settings.encoders[0]), encoder_key(after.encoders[0])
    with dg.instance_for_test() as instance:
        batch, first = ingest_with_dagster(settings, instance)
        assert first.success
        n_chunks = db_rows(settings, "SELECT count(*) FROM chunks")[0][0]
        new_defs = build_definitions(after)
        # The tokenizer is the same content in another folder: chunk ids (and their vectors) stay.
        assert stale_by_code_version(new_defs, instance) == {"embeddings/clip"}
        checks = dg.materialize(
            [*new_defs.assets, *new_defs.asset_checks],
            selection=dg.AssetSelection.checks(
                *(dg.AssetCheckKey(dg.AssetKey(k), "up_to_date") for k in ("chunks", ["embeddings", "clip"]))
            ),
            instance=instance,
            resources=dict(new_defs.resources),
        )
        verdicts = {e.asset_key.to_user_string(): e for e in checks.get_asset_check_evaluations()}
        assert not verdicts["embeddings/clip"].passed and verdicts["chunks"].passed, verdicts
        assert verdicts["embeddings/clip"].metadata["stale_batches"].value == 1

        ui_steps = new_defs.resolve_job_def("ingest_job").execute_in_process(
            partition_key=batch,
            instance=instance,
            asset_selection=[dg.AssetKey("chunks"), dg.AssetKey("vector_tables")],
        )
        assert ui_steps.success
        assert db_rows(after, f"SELECT count(*) FROM emb_{old_key}")[0][0] == n_chunks
        text_hits = search(after.db_path, text="the cat sat", k=3, modality="text", encoder=old_key)
        assert len(text_hits) == 3 and all(h.encoder == old_key for h in text_hits)

        summary = run_pipeline(after, list(after.sources), run_config=None, instance=instance)
        assert summary.ok and summary.stale == {"embeddings/clip": 1} and summary.batches_run == [batch]
        assert stale_by_code_version(new_defs, instance) == set()
        check = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey(["embeddings", "clip"]), "up_to_date")
        )
        assert check.event.dagster_event.event_specific_data.passed, "the asset graph shows it up to date again"
    for key in (old_key, new_key):
        assert db_rows(after, f"SELECT count(*) FROM emb_{key}")[0][0] == n_chunks
        assert search(after.db_path, text="the cat sat", k=1, modality="text", encoder=key)
