"""Scores comparable across modalities, for searches over all of them.

CLIP's modality gap: a text query's cosine to any text (related or not) is far higher than to any
image, so a list of every modality ranked by cosine is all text. Per (query modality, target
modality), a cosine is calibrated to how far it stands above that pair's background: z = (cosine -
mean) / std over the similarities of the queries and targets it was fitted on (mostly unrelated
pairs). A related image then stands as far above the unrelated images as a related text above the
unrelated texts, and the two lists merge on equal terms.

Fitted by retrieval_eval on the training split's captioned images (their captions and vectors as
queries) against the table's stored vectors of each modality; measured on the test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mm_assets.evaluation.metrics import retrieval_metrics

# Queries and targets per modality a fit uses (the first, in a fixed order): a background's mean and
# spread settle within a few thousand, and a fit must stay small however many captioned images exist.
FIT_SAMPLE = 2000
# A pair needs this many query x target similarities to be fitted at all.
MIN_FIT_PAIRS = 20


@dataclass(frozen=True)
class Background:
    """The spread of one (query modality, target modality) pair's cosines."""

    mean: float
    std: float
    n: int  # similarities it was fitted on

    def calibrate(self, similarity: np.ndarray) -> np.ndarray:
        return (np.asarray(similarity, dtype=np.float64) - self.mean) / self.std


def fit_backgrounds(
    queries: dict[str, np.ndarray], targets: dict[str, np.ndarray]
) -> dict[tuple[str, str], Background]:
    """(query modality, target modality) -> its background, for every pair with enough data; a
    query's similarity to itself (the same vector among the targets) is left out."""
    fitted = {}
    for q_modality, q in queries.items():
        for t_modality, t in targets.items():
            if not len(q) or not len(t):
                continue
            similarity = q[:FIT_SAMPLE] @ t[:FIT_SAMPLE].T
            values = similarity[similarity < 1 - 1e-6]  # not the query itself
            if values.size >= MIN_FIT_PAIRS and values.std() > 0:
                fitted[(q_modality, t_modality)] = Background(float(values.mean()), float(values.std()), values.size)
    return fitted


def merged_ranking_figures(
    queries: np.ndarray,
    gallery: dict[str, np.ndarray],
    relevant: dict[str, np.ndarray],
    itself: dict[str, np.ndarray],
    query_modality: str,
    backgrounds: dict[tuple[str, str], Background] | None,
    k: int = 10,
) -> dict[str, float]:
    """Queries over a gallery of several modalities ranked as one list, by cosine (``backgrounds``
    None) or by calibrated score: the retrieval metrics of the merged list and the share of each
    modality in its top k (``images@10``, ``texts@10``). ``relevant[m]`` and ``itself[m]``: queries x
    gallery[m] booleans; a query's own entry (``itself``) is left out of the ranking."""
    scores, flags, modality_of = [], [], []
    for modality, vectors in gallery.items():
        similarity = np.asarray(queries @ vectors.T, dtype=np.float64)
        if backgrounds is not None:
            similarity = backgrounds[(query_modality, modality)].calibrate(similarity)
        scores.append(np.where(itself[modality], -np.inf, similarity))
        flags.append(relevant[modality] & ~itself[modality])
        modality_of += [modality] * vectors.shape[0]
    score, rel, modality_of = np.concatenate(scores, axis=1), np.concatenate(flags, axis=1), np.asarray(modality_of)
    top = np.argsort(-score, axis=1, kind="stable")[:, :k]
    shares = {f"{modality}s@{k}": float((modality_of[top] == modality).mean()) for modality in gallery}
    return {**retrieval_metrics(score, rel), **shares}
