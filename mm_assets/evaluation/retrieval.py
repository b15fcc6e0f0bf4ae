"""Cross-modal retrieval evaluation of one vector table: on the held-out split of labelled images,
and on the figures of documents, found by their own captions and alt text."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import duckdb
import numpy as np

from mm_assets.evaluation.calibration import FIT_SAMPLE, fit_calibrations, merged_ranking_figures
from mm_assets.evaluation.metrics import retrieval_metrics
from mm_assets.search.calibrated import Calibration
from mm_assets.store.catalog import EncoderTable
from mm_assets.store.served import ServedVectors

if TYPE_CHECKING:  # passed in: importing it would pull torch into the definitions (which read EVAL_VERSION)
    from mm_assets.encoders.clip import ClipEncoder
    from mm_assets.search.query import Searcher

# Bumped when evaluation changes what it measures (the retrieval_eval code version).
EVAL_VERSION = "3"
TASKS = (
    "text->image",
    "image->text",
    "text->text",
    "image->image",
    "caption->figure",
    "text->all",
    "image->all",
    "rare-token->text",
    "item->item",
)
# The variant of an encoder whose mixed-modality scores are calibrated, as the comparison names it.
CALIBRATED = "calibrated"
# Rare-token queries: words with a digit and a letter (codes, part numbers, model names) found in at
# most this many text chunks, at most RARE_TOKEN_QUERIES of them (the first by the word itself).
RARE_TOKEN = re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w][\w-]{3,}\b")
RARE_TOKEN_MAX_CHUNKS = 2
RARE_TOKEN_QUERIES = 200


def in_test_split(file_id: str, test_percent: int) -> bool:
    """Fixed by content: the same file always lands in the same split, whatever else changes."""
    return int(file_id[:8], 16) % 100 < test_percent


def served_rows(served: ServedVectors, table: EncoderTable, columns: str, where: str) -> tuple[list, np.ndarray]:
    """(the ``columns`` of each chunk with a vector in the table matching ``where``, those vectors),
    by chunk id: the SQL picks the chunks (``f``: files, ``c``: chunks), the served vectors give
    their vectors."""
    rows = (
        served.connection()
        .execute(f"""
        SELECT {columns}, c.chunk_id FROM files f JOIN chunks c USING (file_id)
        SEMI JOIN {table.table_name} e USING (chunk_id)
        WHERE {where} ORDER BY c.chunk_id""")
        .fetchall()
    )
    return [r[:-1] for r in rows], served.vectors_in_order(table, [r[-1] for r in rows])


def labelled_items(served: ServedVectors, table: EncoderTable, test_percent: int, test: bool = True):
    """(file ids, captions, labels, whole-image vectors) of captioned images in the test split (or,
    ``test`` False, the training split), by file id."""
    whole_captioned_images = "f.caption IS NOT NULL AND c.modality = 'image' AND c.position = 0"
    rows, vectors = served_rows(served, table, "f.file_id, f.caption, f.label", whole_captioned_images)
    order = sorted((r[0], i) for i, r in enumerate(rows) if in_test_split(r[0], test_percent) == test)
    kept = [i for _, i in order]
    ids = [rows[i][0] for i in kept]
    captions = [rows[i][1] for i in kept]
    labels = [rows[i][2] for i in kept]
    return ids, captions, labels, vectors[kept].reshape(len(kept), table.dim)


def evaluate_encoder_table(
    served: ServedVectors, table: EncoderTable, encoder: ClipEncoder, test_percent: int
) -> tuple[list[dict], dict[tuple[str, str], Calibration]]:
    """One result per task, and the score calibrations fitted on the training split. Relevant = same
    label (or the query's own pair when unlabelled). Same-modality tasks leave the query itself out
    and need labels (otherwise nothing is relevant). The mixed tasks rank images and captions
    together, by cosine and calibrated, with the share of images in each top 10."""
    results = _caption_figure_result(served, table)
    train_ids, train_captions, train_labels, train_images = labelled_items(served, table, test_percent, test=False)
    items = {"text": embed_captions(encoder, train_captions[:FIT_SAMPLE]), "image": train_images[:FIT_SAMPLE]}
    calibrations = fit_calibrations(items, _relevance_keys(train_ids, train_labels))
    ids, captions, labels, images = labelled_items(served, table, test_percent)
    if not ids:
        return results, calibrations
    texts = embed_captions(encoder, captions)
    keys = _relevance_keys(ids, labels)
    relevant = keys[:, None] == keys[None, :]
    not_self = ~np.eye(len(ids), dtype=bool)
    pairs = {
        "text->image": (texts, images, relevant),
        "image->text": (images, texts, relevant),
        "text->text": (texts, texts, relevant & not_self),
        "image->image": (images, images, relevant & not_self),
    }
    for task, (queries, gallery, rel) in pairs.items():
        similarity = queries @ gallery.T
        if queries is gallery:
            similarity = np.where(not_self, similarity, -np.inf)  # the query is not its own answer
        metrics = retrieval_metrics(similarity, rel)
        if metrics["n_queries"]:
            results.append({"encoder": table.name, "encoder_key": table.encoder_key, "task": task, **metrics})
    gallery = {"image": images, "text": texts}
    for modality, queries in (("text", texts), ("image", images)):
        itself = {m: ~not_self if m == modality else np.zeros_like(not_self) for m in gallery}
        mixed = {m: relevant for m in gallery}
        for name, fitted in ((table.name, None), (f"{table.name} {CALIBRATED}", calibrations)):
            if fitted is not None and not all((modality, m) in fitted for m in gallery):
                continue  # too few training pairs to calibrate
            metrics = merged_ranking_figures(queries, gallery, mixed, itself, modality, fitted)
            if metrics["n_queries"]:
                results.append(
                    {"encoder": name, "encoder_key": table.encoder_key, "task": f"{modality}->all", **metrics}
                )
    return results, calibrations


def _relevance_keys(ids: list[str], labels: list[str | None]) -> np.ndarray:
    """Items with equal keys are relevant to each other: the label, else the file (image and caption)."""
    return np.asarray([label if label is not None else f"pair:{fid}" for fid, label in zip(ids, labels)])


def rare_token_queries(con: duckdb.DuckDBPyConnection) -> list[tuple[str, set[str]]]:
    """(word, the text chunks holding it) for the rare words of the served text: documents
    evaluate exact-word search on themselves, as they do caption->figure."""
    holders: dict[str, set[str]] = {}
    for chunk_id, text in con.execute("SELECT chunk_id, text FROM chunks WHERE modality = 'text'").fetchall():
        for word in set(RARE_TOKEN.findall(text or "")):
            holders.setdefault(word, set()).add(chunk_id)
    rare = sorted(w for w, chunks in holders.items() if len(chunks) <= RARE_TOKEN_MAX_CHUNKS)
    return [(w, holders[w]) for w in rare[:RARE_TOKEN_QUERIES]]


def rare_token_results(searcher: Searcher, table: EncoderTable) -> list[dict]:
    """Each rare word as a query over the text chunks, by vectors alone and hybrid (vectors fused
    with BM25): recall@1/5/10 and MRR within the top 10."""
    queries = rare_token_queries(searcher.served.connection())
    if not queries or "text" not in table.metadata["modalities"]:
        return []
    results = []
    for name, hybrid in ((table.name, False), (f"{table.name} hybrid", True)):
        first = []  # rank of the first chunk holding the word, 11 when not in the top 10
        for word, holders in queries:
            hits = searcher.search(text=word, k=10, modality="text", encoder=table.encoder_key, hybrid=hybrid)
            first.append(next((r for r, h in enumerate(hits, 1) if h.chunk_id in holders), 11))
        first = np.asarray(first)
        metrics = {f"recall@{k}": float((first <= k).mean()) for k in (1, 5, 10)}
        metrics["mrr"] = float(np.where(first <= 10, 1.0 / first, 0.0).mean())
        task = {"encoder": name, "encoder_key": table.encoder_key, "task": "rare-token->text"}
        results.append({**task, **metrics, "n_queries": len(queries)})
    return results


def embed_captions(encoder: ClipEncoder, captions: list[str]) -> np.ndarray:
    size = encoder.config.batch_size
    if not captions:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.concatenate([encoder.embed_texts(captions[i : i + size]) for i in range(0, len(captions), size)])


def _caption_figure_result(served: ServedVectors, table: EncoderTable) -> list[dict]:
    """Each caption or alt text of a document (a text chunk linked to its figure) as a query over every
    figure: free labelled pairs, never used for fine-tuning. Uses the stored vectors."""
    figures, gallery = served_rows(served, table, "c.chunk_id", "c.role = 'figure'")
    described, queries = served_rows(served, table, "c.linked_chunk_id", "c.linked_chunk_id IS NOT NULL")
    figure_ids, described = [r[0] for r in figures], [r[0] for r in described]
    if not figure_ids or not described:
        return []
    relevant = np.asarray(described)[:, None] == np.asarray(figure_ids)[None, :]
    metrics = retrieval_metrics(queries @ gallery.T, relevant)
    return (
        [{"encoder": table.name, "encoder_key": table.encoder_key, "task": "caption->figure", **metrics}]
        if metrics["n_queries"]
        else []
    )


def comparison_markdown(results: list[dict]) -> str:
    """Every encoder side by side per task, with chance level; for the mixed tasks, the share of
    images in the top 10 (the rest is text)."""
    columns = ["task", "encoder", "recall@1", "recall@5", "recall@10", "mrr", "ndcg@10", "chance@1", "n_queries"]
    columns += ["images@10"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in sorted(results, key=lambda r: (TASKS.index(r["task"]), r["encoder"])):
        values = [r.get(c) for c in columns]
        cells = [f"{v:.3f}" if isinstance(v, float) else "" if v is None else str(v) for v in values]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
