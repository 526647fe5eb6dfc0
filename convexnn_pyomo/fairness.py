"""Fairness metrics (numpy only): demographic-parity differences of scores or predictions."""

from __future__ import annotations

import numpy as np

__all__ = ["parity_difference", "parity_report"]


def parity_difference(values, groups) -> float:
    """Demographic-parity difference: the largest group mean of ``values`` minus the smallest.

    ``values`` may be scores in [0, 1], probabilities or 0/1 predictions (for predictions this is
    fairlearn's ``demographic_parity_difference``); ``groups`` holds any hashable group labels, one
    per value.
    """
    values = np.asarray(values, dtype=float).ravel()
    groups = np.asarray(groups).ravel()
    if values.shape != groups.shape or values.size == 0:
        raise ValueError(f"values and groups need the same non-zero length, got {values.size} and {groups.size}")
    means = [values[groups == g].mean() for g in np.unique(groups)]
    return float(max(means) - min(means))


def parity_report(scores, y, groups, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy of the predictions ``scores >= threshold`` against the 0/1 labels ``y``, and the
    demographic-parity difference of the scores (``score_parity``) and of those predictions
    (``prediction_parity``)."""
    scores = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if scores.shape != y.shape:
        raise ValueError(f"scores and y need the same length, got {scores.size} and {y.size}")
    pred = (scores >= threshold).astype(float)
    return {
        "accuracy": float(np.mean(pred == y)),
        "score_parity": parity_difference(scores, groups),
        "prediction_parity": parity_difference(pred, groups),
    }
