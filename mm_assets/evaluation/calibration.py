"""Fitting the scores that make modalities comparable (search/calibrated.py applies them).

CLIP's modality gap: a text query's cosine to any text (related or not) is far higher than to any
image, so a list of every modality ranked by cosine is all text. Per (query modality, target
modality), a cosine is calibrated to the log-odds that the target is relevant: a logistic fit
(Platt scaling) of relevance on cosine, over the captioned pairs of the training split (same label,
or the image and its own caption, are relevant). Log-odds mean the same thing whatever the pair, so
lists of several modalities merge on equal terms; within one modality the order is the cosine's.

Fitted by retrieval_eval on the training split and written for search (search/calibrated.py);
measured on the test split (tasks text->all and image->all).
"""

from __future__ import annotations

import numpy as np

from mm_assets.evaluation.metrics import retrieval_metrics
from mm_assets.search.calibrated import Calibration

# Queries and targets per modality a fit uses (the first, in a fixed order): a two-parameter fit
# settles within a few thousand, and must stay small however many captioned images exist.
FIT_SAMPLE = 2000
# A pair is fitted only with this many relevant and this many irrelevant (query, target) pairs.
MIN_FIT_PAIRS = 20


def fit_calibrations(items: dict[str, np.ndarray], keys: np.ndarray) -> dict[tuple[str, str], Calibration]:
    """(query modality, target modality) -> its calibration, for every pair with enough relevant and
    irrelevant pairs. ``items[m]``: row i is item i in modality m (an image and its caption share a
    row); ``keys[i]``: what makes two items relevant to each other (their label, or the item itself).
    An item is never its own query."""
    keys = np.asarray(keys)[:FIT_SAMPLE]
    relevant = keys[:, None] == keys[None, :]
    fitted = {}
    for q_modality, queries in items.items():
        for t_modality, targets in items.items():
            similarity = queries[:FIT_SAMPLE] @ targets[:FIT_SAMPLE].T
            keep = ~np.eye(len(keys), dtype=bool) if q_modality == t_modality else np.ones_like(relevant)
            x, y = similarity[keep], relevant[keep]
            if min(y.sum(), (~y).sum()) >= MIN_FIT_PAIRS:
                slope, intercept = fit_logistic(x.astype(np.float64), y.astype(np.float64))
                fitted[(q_modality, t_modality)] = Calibration(slope, intercept, int(x.size))
    return fitted


def fit_logistic(x: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Maximum-likelihood (slope, intercept) of P(y=1 | x) = sigmoid(slope * x + intercept), by
    Newton's method, x standardised for the solve (a tiny ridge keeps separable data finite)."""
    mean, std = x.mean(), x.std() or 1.0
    z = (x - mean) / std
    w = np.zeros(2)
    design = np.stack([z, np.ones_like(z)], axis=1)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        gradient = design.T @ (y - p) - 1e-3 * w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + 1e-3 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w += step
        if np.abs(step).max() < 1e-8:
            break
    if w[0] <= 0:  # the cosine says nothing here: the base rate, keeping the cosine's order
        base = min(max(float(y.mean()), 1e-9), 1 - 1e-9)
        return 1e-6, float(np.log(base / (1 - base)) - 1e-6 * mean)
    return float(w[0] / std), float(w[1] - w[0] * mean / std)


def merged_ranking_figures(
    queries: np.ndarray,
    gallery: dict[str, np.ndarray],
    relevant: dict[str, np.ndarray],
    itself: dict[str, np.ndarray],
    query_modality: str,
    calibrations: dict[tuple[str, str], Calibration] | None,
    k: int = 10,
) -> dict[str, float]:
    """Queries over a gallery of several modalities ranked as one list, by cosine (``calibrations``
    None) or by calibrated score: the retrieval metrics of the merged list and the share of each
    modality in its top k (``images@10``, ``texts@10``). ``relevant[m]`` and ``itself[m]``: queries x
    gallery[m] booleans; a query's own entry (``itself``) is left out of the ranking."""
    scores, flags, modality_of = [], [], []
    for modality, vectors in gallery.items():
        similarity = np.asarray(queries @ vectors.T, dtype=np.float64)
        if calibrations is not None:
            similarity = calibrations[(query_modality, modality)].calibrate(similarity)
        scores.append(np.where(itself[modality], -np.inf, similarity))
        flags.append(relevant[modality] & ~itself[modality])
        modality_of += [modality] * vectors.shape[0]
    score, rel, modality_of = np.concatenate(scores, axis=1), np.concatenate(flags, axis=1), np.asarray(modality_of)
    top = np.argsort(-score, axis=1, kind="stable")[:, :k]
    shares = {f"{modality}s@{k}": float((modality_of[top] == modality).mean()) for modality in gallery}
    return {**retrieval_metrics(score, rel), **shares}
