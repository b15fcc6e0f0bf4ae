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


def test_any_duckdb_client_opens_the_served_generation_from_its_sql_file(indexed):
    """`duckdb -init <home>/vectors/current.sql`: the live rows as search sees them, and the vectors
    for array_cosine_similarity."""
    import duckdb
    import numpy as np

    from mm_assets.search.query import Searcher

    script = (indexed.db_path / "current.sql").read_text()
    with duckdb.connect() as client, Searcher(indexed.db_path) as searcher:
        client.execute(script)
        ours = searcher.served.connection()
        for table in ("files", "chunks", "paths", "quarantine"):
            query = f"SELECT * FROM {table} ORDER BY ALL"
            assert client.execute(query).fetchall() == ours.execute(query).fetchall(), table
        (table,) = searcher.served.tables()
        assert client.execute("SELECT table_name FROM encoders").fetchall() == [(table.table_name,)]
        query_vector = searcher.served.vector(table, searcher.served.live_vectors(table)[0][0])
        found = client.execute(
            f"""SELECT chunk_id, array_cosine_similarity(embedding, $q::FLOAT[{table.dim}]) AS cosine
                FROM {table.table_name} ORDER BY cosine DESC, chunk_id LIMIT 5""",
            {"q": query_vector.tolist()},
        ).fetchall()
        nearest = searcher.served.nearest(table, query_vector, 5)
        assert [c for c, _ in found] == [c for c, _ in nearest]
        assert np.allclose([1 - cos for _, cos in found], [d for _, d in nearest], atol=1e-5)
