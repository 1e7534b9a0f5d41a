"""Thresholds: the chosen one is the best over every candidate cut, found here by brute force (then checked with
scikit-learn's metrics)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from yamnet_beam.customize.calibrate import choose_threshold


def _sample(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(400) < 0.3
    s = np.clip(0.35 * y + rng.normal(0.35, 0.2, 400), 0, 1).astype(np.float32)
    return y, s


def _cuts(y, s):
    """Every distinct score as a cut ``s >= t``, with its precision, recall and F1 from their definitions."""
    for t in np.unique(s):
        pred = s >= t
        tp = int((pred & y).sum())
        p, r = tp / pred.sum(), tp / y.sum()
        yield float(t), p, r, (2 * p * r / (p + r) if tp else 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_threshold_maximises_f1(seed):
    y, s = _sample(seed)
    got = choose_threshold(y, s)
    best = max(f for *_, f in _cuts(y, s))
    pred = s >= np.float32(got["threshold"])
    assert f1_score(y, pred) == pytest.approx(best, abs=1e-12) == pytest.approx(got["f1"], abs=1e-12)
    assert (precision_score(y, pred), recall_score(y, pred)) == pytest.approx((got["precision"], got["recall"]))


@pytest.mark.parametrize("target", [0.6, 0.8, 0.95])
def test_target_precision_gives_the_most_recall_that_reaches_it(target):
    y, s = _sample(3)
    got = choose_threshold(y, s, target_precision=target)
    reachable = [(r, p) for _, p, r, _ in _cuts(y, s) if p >= target]
    assert got["reached"] and reachable
    pred = s >= np.float32(got["threshold"])
    assert precision_score(y, pred) >= target
    assert recall_score(y, pred) == pytest.approx(max(r for r, _ in reachable), abs=1e-12) == got["recall"]


def test_an_unreachable_precision_is_flagged_with_the_most_precise_cut():
    y = np.array([1, 0, 1, 0, 1, 0], bool)
    s = np.array([0.9, 0.9, 0.5, 0.5, 0.1, 0.1], np.float32)  # every cut is 50 % precise
    got = choose_threshold(y, s, target_precision=0.9)
    assert not got["reached"] and got["precision"] == pytest.approx(0.5)
