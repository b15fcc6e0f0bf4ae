"""mm_assets/store/catalog.py: which encoder table a query uses, and what the database holds."""

from __future__ import annotations

import pytest

from mm_assets.encoders.identity import encoder_key
from mm_assets.store.catalog import (
    EncoderTable,
    choose_encoder_table,
    list_encoder_tables,
    quarantined_files,
    table_counts,
)
from mm_assets.store.duck import VectorDBError
from mm_assets.store.segments import open_read_only


def _table(name: str, key: str, *, current: bool = True, default: bool = False) -> EncoderTable:
    return EncoderTable(key, name, f"emb_{key}", 8, False, current, default, 3, {})


# As list_encoder_tables orders them: the default first, then current ones.
TABLES = [
    _table("clip", "clip_new", default=True),
    _table("clap", "clap_a"),
    _table("clip", "clip_old", current=False),
]


def test_an_encoder_is_chosen_by_name_key_or_table_and_else_the_default():
    assert choose_encoder_table(TABLES, "clip").encoder_key == "clip_new", "a name means its current table"
    assert choose_encoder_table(TABLES, "clip_old").encoder_key == "clip_old"
    assert choose_encoder_table(TABLES, "emb_clap_a").encoder_key == "clap_a"
    assert choose_encoder_table(TABLES, None, "clap_a").encoder_key == "clap_a", "the configured default"
    assert choose_encoder_table(TABLES).encoder_key == "clip_new", "the default of the build"
    assert choose_encoder_table(TABLES, "clap", "clip_new").encoder_key == "clap_a", "asked beats default"


def test_a_missing_encoder_lists_the_choices():
    with pytest.raises(VectorDBError, match=r"no embedding table for encoder 'siglip'; available: clip \(clip_new\)"):
        choose_encoder_table(TABLES, "siglip")
    with pytest.raises(VectorDBError, match="no vectors yet for the configured default encoder"):
        choose_encoder_table(TABLES, None, "clip_newer")
    with pytest.raises(VectorDBError, match="no embedding tables yet"):
        choose_encoder_table([])


def test_the_catalog_of_a_built_database(bad_reasons, indexed):
    con = open_read_only(indexed.db_path)
    try:
        (table,) = list_encoder_tables(con)
        counts = table_counts(con)
        quarantined = quarantined_files(con)
    finally:
        con.close()
    assert table.encoder_key == encoder_key(indexed.default_encoder) and table.is_default and table.is_current
    assert table.n_vectors == counts["chunks"] and table.metadata["embedding_dim"] == table.dim == 16
    assert table.summary()["vectors"] == table.n_vectors and table.summary()["model"] == indexed.default_encoder.model
    assert {q["path"].rsplit("/", 1)[1] for q in quarantined} == set(bad_reasons)
    assert counts["quarantine"] == len(quarantined)
