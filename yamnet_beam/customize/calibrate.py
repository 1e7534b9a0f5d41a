"""Per-class score thresholds chosen on held-out predictions (YAMNet's own scores "have not been calibrated").

For each class, frames of files carrying the class are positives, all others negatives; the threshold is the
held-out score that maximises F1, or, with a target precision, the one with the most recall among those that
reach it. A frame is "over threshold" when its score is ``>=`` the threshold, everywhere this is applied.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from yamnet_beam.customize.learn import sklearn_module


def _sklearn_metrics():
    return sklearn_module("metrics")


def choose_threshold(y: np.ndarray, s: np.ndarray, target_precision: float | None = None) -> dict[str, Any]:
    """The threshold for one class from 0/1 truth ``y`` and scores ``s``, with what it measured there."""
    y = np.asarray(y, dtype=bool)
    s = np.asarray(s, dtype=np.float32).astype(np.float64)
    support = int(y.sum())
    if support == 0 or support == len(y):
        t = 1.0 if support == 0 else 0.0
        return {"threshold": t, "precision": None, "recall": None, "f1": None, "support": support, "reached": False}
    precision, recall, thresholds = _sklearn_metrics().precision_recall_curve(y, s)
    precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    reached = True
    if target_precision is None:
        i = int(np.argmax(f1))
    else:
        ok = np.flatnonzero(precision >= target_precision)
        if len(ok):
            i = int(ok[np.argmax(recall[ok])])
        else:  # unreachable: the most precise threshold, flagged
            i, reached = int(np.argmax(precision)), False
    t = float(np.float32(thresholds[i]))
    return {
        "threshold": min(max(t, 0.0), 1.0),
        "precision": float(precision[i]),
        "recall": float(recall[i]),
        "f1": float(f1[i]),
        "support": support,
        "reached": reached,
    }


def calibrate(
    y: np.ndarray, scores: np.ndarray, classes: list[str], target_precision: float | None = None
) -> dict[str, dict[str, Any]]:
    """Per class (``[N, K]`` truth and held-out scores), :func:`choose_threshold`'s choice."""
    return {c: choose_threshold(y[:, k], scores[:, k], target_precision) for k, c in enumerate(classes)}
