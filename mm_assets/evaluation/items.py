"""Recommendation over items ("items like this one"): each captioned image of the test split as a
query over the others, relevant when they share its label, by the item vectors a fused encoder
serves, against the same model's image vectors alone, its caption vectors alone, late fusion (the
weighted sum of the two cosines) and intermediate fusion (the renormalised weighted sum of the two
vectors); and the image weight its fusion would best use, fitted on the training split."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mm_assets.encoders.fusion import fuse_vectors
from mm_assets.evaluation.metrics import retrieval_metrics
from mm_assets.evaluation.retrieval import embed_captions, in_test_split, labelled_items, served_rows
from mm_assets.store.catalog import EncoderTable
from mm_assets.store.served import ServedVectors

if TYPE_CHECKING:
    from mm_assets.encoders.clip import ClipEncoder

TASK = "item->item"
WEIGHTS = np.round(np.linspace(0.0, 1.0, 21), 2)  # image weights tried when fitting
FIT_SAMPLE = 2000  # training items the weight is fitted on


def _item_vectors(served: ServedVectors, table: EncoderTable, test_percent: int) -> dict[str, np.ndarray]:
    """File id -> the fused table's item vector, for the labelled items of the test split."""
    rows, vectors = served_rows(served, table, "f.file_id", "c.role = 'item' AND f.label IS NOT NULL")
    return {fid: vectors[i] for i, (fid,) in enumerate(rows) if in_test_split(fid, test_percent)}


def _recommendation_metrics(vectors: np.ndarray, labels: list[str]):
    """Each item as a query over the others (by dot product), relevant when it shares the label."""
    keys = np.asarray(labels)
    not_self = ~np.eye(len(keys), dtype=bool)
    scores = np.where(not_self, vectors @ vectors.T, -np.inf)
    return retrieval_metrics(scores, (keys[:, None] == keys[None, :]) & not_self)


def fit_image_weight(
    images: np.ndarray, captions: np.ndarray, labels: list[str], mode: str = "intermediate"
) -> float | None:
    """The image weight of fusion (``mode``) with the best MRR of item->item on these items (the
    middle of equally good ones: the safest from both edges); None when no item has another of its
    label."""
    mrr = [_recommendation_metrics(fuse_vectors(images, captions, w, mode), labels).get("mrr") for w in WEIGHTS]
    if mrr[0] is None:  # no item shares its label with another: nothing to fit on
        return None
    best = np.flatnonzero(np.asarray(mrr) >= max(mrr) - 1e-9)
    return float(WEIGHTS[best[len(best) // 2]])


def item_results(
    served: ServedVectors,
    fused: EncoderTable,
    base: EncoderTable | None,
    encoder: ClipEncoder,
    test_percent: int,
) -> list[dict]:
    """item->item for every variant, named after the encoder: "<of> image only", "<of> caption only",
    "<fused> late w=..." and "<fused> intermediate w=..." (both computed at the configured weight),
    "<fused>" (the served vectors) and "<fused> fitted w=..." (the encoder's mode at the weight fitted
    on the training split)."""
    if base is None:
        return []
    weight, mode = float(fused.metadata["fusion"]["image_weight"]), fused.metadata["fusion"]["mode"]
    _, fit_captions, fit_labels, fit_images = labelled_items(served, base, test_percent, test=False)
    keep = [i for i, label in enumerate(fit_labels) if label is not None][:FIT_SAMPLE]
    fit_texts = embed_captions(encoder, [fit_captions[i] for i in keep])
    fitted = fit_image_weight(fit_images[keep], fit_texts, [fit_labels[i] for i in keep], mode)
    ids, captions, labels, images = labelled_items(served, base, test_percent)
    item_vectors = _item_vectors(served, fused, test_percent)
    keep = [i for i, (fid, label) in enumerate(zip(ids, labels)) if label is not None and fid in item_vectors]
    if len(keep) < 2:
        return []
    labels = [labels[i] for i in keep]
    images, texts = images[keep], embed_captions(encoder, [captions[i] for i in keep])
    variants = {
        f"{base.name} image only": images,
        f"{base.name} caption only": texts,
        f"{fused.name} late w={weight:g}": fuse_vectors(images, texts, weight, "late"),
        f"{fused.name} intermediate w={weight:g}": fuse_vectors(images, texts, weight),
        fused.name: np.stack([item_vectors[ids[i]] for i in keep]),
    }
    if fitted is not None:
        variants[f"{fused.name} fitted w={fitted:g}"] = fuse_vectors(images, texts, fitted, mode)
    results = []
    for name, vectors in variants.items():
        metrics = _recommendation_metrics(vectors, labels)
        if metrics["n_queries"]:
            results.append({"encoder": name, "encoder_key": fused.encoder_key, "task": TASK, **metrics})
    return results
