"""Search exactness against NumPy, image self-retrieval, HNSW, and clear errors."""

import shutil
from dataclasses import replace
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mm_assets.encoders.identity import encoder_key
from mm_assets.encoders.load import recorded_encoder
from mm_assets.search.query import search
from mm_assets.store.catalog import choose_encoder_table, list_encoder_tables
from mm_assets.store.duck import VectorDBError
from mm_assets.store.segments import open_read_only
from mm_assets_tests.helpers import db_rows, ingest_with_dagster, stored_vectors


def numpy_top_k(settings, query: np.ndarray, k: int, modality=None):
    (table,) = [r[0] for r in db_rows(settings, "SELECT table_name FROM encoders")]
    ids, vectors = stored_vectors(settings, table)
    modalities = dict(db_rows(settings, "SELECT chunk_id, modality FROM chunks"))
    distances = 1 - vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    ranked = sorted((d, cid) for d, cid in zip(distances, ids) if modality in (None, modalities[cid]))
    return ranked[:k]


def query_vector(settings, text):
    con = open_read_only(settings.db_path)
    try:
        return recorded_encoder(
            choose_encoder_table(list_encoder_tables(con), None, encoder_key(settings.default_encoder))
        ).embed_texts([text])[0]
    finally:
        con.close()


@pytest.mark.parametrize("modality", [None, "image", "text"])
def test_exact_search_equals_numpy_brute_force(indexed, modality):
    q = "a dog on a beach"
    hits = search(indexed.db_path, text=q, k=7, modality=modality, default_key=encoder_key(indexed.default_encoder))
    expected = numpy_top_k(indexed, query_vector(indexed, q), 7, modality)
    assert [h.chunk_id for h in hits] == [cid for _, cid in expected]
    assert np.allclose([h.distance for h in hits], [d for d, _ in expected], atol=1e-5)
    assert all(h.modality == modality for h in hits if modality)
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)


def test_an_image_from_the_corpus_finds_itself_first(indexed):
    photo = indexed.sources[0] / "images" / "photo.jpg"
    hits = search(indexed.db_path, image=photo, k=3, default_key=encoder_key(indexed.default_encoder))
    assert hits[0].path == str(photo) and hits[0].distance < 1e-4


def test_hnsw_index_is_built_when_configured_and_used(settings, monkeypatch):
    from mm_assets.store import segment_writer

    monkeypatch.setattr(segment_writer, "HNSW_MIN_ROWS", 1)  # index the (tiny) segment
    settings = replace(settings, hnsw=True)
    with dg.instance_for_test() as instance:
        ingest_with_dagster(settings, instance)
    con = open_read_only(settings.db_path)
    try:
        table = choose_encoder_table(list_encoder_tables(con), None, encoder_key(settings.default_encoder))
        assert table.has_hnsw
        plan = con.execute(
            f"EXPLAIN SELECT chunk_id FROM s0.{table.table_name} ORDER BY "
            f"array_cosine_distance(embedding, $q::FLOAT[{table.dim}]) LIMIT 5",
            {"q": [0.1] * table.dim},
        ).fetchall()[0][1]
        assert "HNSW_INDEX_SCAN" in plan
    finally:
        con.close()
    photo = settings.sources[0] / "images" / "photo.jpg"
    approx = search(settings.db_path, image=photo, k=5, default_key=encoder_key(settings.default_encoder))
    exact = search(settings.db_path, image=photo, k=5, default_key=encoder_key(settings.default_encoder), exact=True)
    assert approx[0].path == str(photo) and [h.chunk_id for h in approx] == [h.chunk_id for h in exact]


def test_search_without_a_database_says_how_to_build_it(settings):
    with pytest.raises(VectorDBError, match="mm-assets run"):
        search(settings.db_path, text="x")


def rematerialize_vector_tables(settings) -> None:
    from mm_assets.definitions import build_definitions

    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            list(defs.assets), selection=["vector_tables"], instance=instance, resources=dict(defs.resources)
        )
    assert result.success


def _segment(db: Path) -> Path:
    """The vector database's (only) segment file."""
    (segment,) = (db / "segments").glob("*.duckdb")
    return segment


def _garbage(db: Path) -> None:
    _segment(db).write_bytes(b"not a database" * 100)


def _truncated(db: Path) -> None:
    segment = _segment(db)
    segment.write_bytes(segment.read_bytes()[: segment.stat().st_size // 3])


def _zeroed_tail(db: Path) -> None:
    """Blocks lost at the end of the file (where the last tables and the HNSW index were written)."""
    segment = _segment(db)
    data = bytearray(segment.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    segment.write_bytes(bytes(data))


def _pointer_garbage(db: Path) -> None:
    (db / "current.json").write_text('{"segments": [')


def _matrix_deleted(db: Path) -> None:
    for matrix in (db / "segments").rglob("*.npy"):
        matrix.unlink()


def _matrix_truncated(db: Path) -> None:
    for matrix in (db / "segments").rglob("emb_*.npy"):
        if matrix.name.count(".") == 1:  # the vectors themselves, not .ids.npy and the like
            matrix.write_bytes(matrix.read_bytes()[:200])


@pytest.mark.parametrize(
    "damage", [None, _garbage, _truncated, _zeroed_tail, _pointer_garbage, _matrix_deleted, _matrix_truncated]
)
@pytest.mark.parametrize("hnsw", [False, True])
def test_damaged_serving_state_gives_a_clear_error_and_rematerializing_restores_it(settings, damage, hnsw):
    """None stands for deletion of the whole vector database folder."""
    settings = replace(settings, hnsw=hnsw)
    with dg.instance_for_test() as instance:
        assert ingest_with_dagster(settings, instance)[1].success
    photo = settings.sources[0] / "images" / "photo.jpg"
    query = {"image": photo, "k": 10, "default_key": encoder_key(settings.default_encoder)}
    before = search(settings.db_path, **query)
    if damage is None:
        shutil.rmtree(settings.db_path)
    else:
        damage(settings.db_path)
    with pytest.raises(VectorDBError, match="no vector database|rematerialize vector_tables"):
        search(settings.db_path, **query)
        search(settings.db_path, **query, exact=True)  # when the damage spares the approximate path
    rematerialize_vector_tables(settings)
    after = search(settings.db_path, **query)
    assert [(h.chunk_id, h.path) for h in after] == [(h.chunk_id, h.path) for h in before]
    assert np.allclose([h.distance for h in after], [h.distance for h in before], atol=1e-6)


def test_a_hit_comes_with_its_neighbouring_chunks_and_results_group_by_file(indexed):
    from mm_assets.search.query import Searcher

    long_txt = str(indexed.sources[0] / "texts" / "long.txt")
    windows = db_rows(
        indexed,
        "SELECT c.chunk_id, c.position, c.text FROM chunks c JOIN files f USING (file_id) WHERE f.path = ? "
        "ORDER BY c.position",
        [long_txt],
    )
    assert len(windows) >= 4, "the long text must span several windows"
    table = db_rows(indexed, "SELECT table_name FROM encoders")[0][0]
    ids, vectors = stored_vectors(indexed, table)
    target_id, target_position, _ = windows[2]
    with Searcher(indexed.db_path) as searcher:
        query = {"vector": vectors[ids.index(target_id)], "default_key": encoder_key(indexed.default_encoder)}
        [hit] = searcher.search(**query, k=1, context=1)
        assert hit.chunk_id == target_id and hit.path == long_txt and hit.position == target_position
        assert [(c["position"], c["text"]) for c in hit.context] == [(w[1], w[2]) for w in (windows[1], windows[3])]

        ranked = searcher.search(**query, k=8)
        grouped = searcher.search(**query, k=8, group_by_file=True)
    assert len({h.file_id for h in ranked}) < len(ranked), "several windows of the long text rank high"
    assert len({h.file_id for h in grouped}) == len(grouped)
    assert grouped[0].chunk_id == ranked[0].chunk_id
    best = {}
    for h in ranked:
        best.setdefault(h.file_id, h.chunk_id)
    assert [h.chunk_id for h in grouped][: len(best)] == list(best.values())
