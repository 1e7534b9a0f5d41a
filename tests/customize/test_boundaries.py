"""Every threshold at its exact boundary, and the degenerate calibrations: no positives, all, two classes, one fold.

The expectations are the rules as documented (a score is over its threshold when ``>=`` it, both as float32;
a target precision is reached when the precision equals it), computed here by hand.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from yamnet_beam.customize.calibrate import calibrate, choose_threshold
from yamnet_beam.customize.train import train
from yamnet_beam.model.head import load_head
from yamnet_beam.table import schema

# Cuts of these scores (s >= t): t=0.9 p=1 r=.25; 0.8 p=1 r=.5; 0.7 p=1 r=.75; 0.6 p=.75 r=.75; 0.5 p=.8 r=1; ...
Y = np.array([1, 1, 1, 0, 1, 0, 0, 0], bool)
S = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2], np.float32)


def test_a_cut_exactly_at_the_target_precision_reaches_it():
    got = choose_threshold(Y, S, target_precision=0.8)  # the cut at 0.5 is 4/5 = 0.8 precise, all recall
    assert got["reached"] and got["threshold"] == float(np.float32(0.5))
    assert (got["precision"], got["recall"], got["support"]) == (0.8, 1.0, 4)


def test_just_above_the_target_takes_the_next_cut():
    got = choose_threshold(Y, S, target_precision=np.nextafter(0.8, 1))
    assert got["reached"] and got["threshold"] == float(np.float32(0.7)) and got["recall"] == 0.75


def test_a_target_of_one_is_reachable():
    got = choose_threshold(Y, S, target_precision=1.0)
    assert got["reached"] and got["precision"] == 1.0 and got["threshold"] == float(np.float32(0.7))


def test_default_threshold_is_the_best_f1_cut():
    got = choose_threshold(Y, S)  # F1: 0.9 .4, 0.8 .667, 0.7 .857, 0.6 .75, 0.5 .889, 0.4 .8, 0.3 .727, 0.2 .667
    assert got["threshold"] == float(np.float32(0.5)) and got["f1"] == pytest.approx(8 / 9)


def _best_f1(y, s):
    """The best F1 over every cut ``s >= t``, from the definitions."""
    best = 0.0
    for t in np.unique(s):
        pred = s >= t
        tp = int((pred & y).sum())
        if tp:
            p, r = tp / pred.sum(), tp / y.sum()
            best = max(best, 2 * p * r / (p + r))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_best_f1_when_the_scores_tell_little(seed):
    """Uninformative scores: the best cut has precision + recall below 1, where F1's formula is easiest to get wrong."""
    rng = np.random.default_rng(seed)
    y = rng.random(200) < 0.1
    s = rng.random(200).astype(np.float32)
    got = choose_threshold(y, s)
    assert got["f1"] == pytest.approx(_best_f1(y, s), abs=1e-12) and got["precision"] + got["recall"] < 1.2


def test_a_cut_that_finds_no_positive_is_never_the_best():
    got = choose_threshold(np.array([0, 1], bool), np.array([0.9, 0.1], np.float32))  # the top cut: p = r = 0
    assert got["threshold"] == float(np.float32(0.1)) and got["f1"] == pytest.approx(2 / 3)


def test_unreachable_target_takes_the_most_precise_cut_not_the_first():
    y = np.array([0, 1, 1, 0, 0, 0], bool)  # cuts: .9 p=0, .8 .5, .7 .667, .6 .5, .5 .4, .4 .333
    got = choose_threshold(y, S[:6], target_precision=0.9)
    assert not got["reached"] and got["threshold"] == float(np.float32(0.7))
    assert got["precision"] == pytest.approx(2 / 3) and got["recall"] == 1.0


def test_calibration_sees_the_scores_as_stored_float32():
    """Two frames whose float64 scores differ below float32 precision are one score once stored: one cut."""
    got = choose_threshold(np.array([1, 0], bool), np.array([0.5 + 1e-12, 0.5], np.float64))
    assert got["threshold"] == 0.5 and got["precision"] == 0.5 and got["recall"] == 1.0


def test_thresholds_stay_within_zero_and_one():
    got = choose_threshold(np.array([1, 0], bool), np.array([1.5, 0.2], np.float32))  # not probabilities
    assert got["threshold"] == 1.0


@pytest.mark.parametrize(
    "y,threshold",
    [
        (np.zeros(8, bool), 1.0),  # no positives: nothing may be labelled but a certain score
        (np.ones(8, bool), 0.0),  # all positive: every frame is labelled
    ],
)
def test_degenerate_classes(y, threshold):
    got = choose_threshold(y, S, target_precision=0.9)
    assert got == {
        "threshold": threshold,
        "precision": None,
        "recall": None,
        "f1": None,
        "support": int(y.sum()),
        "reached": False,
    }
    assert choose_threshold(y, S)["threshold"] == threshold


def test_calibrate_keeps_each_class_apart():
    y = np.stack([Y, ~Y, np.zeros(8, bool)], axis=1)
    s = np.stack([S, 1 - S, S], axis=1)
    got = calibrate(y, s, ["a", "b", "none"], target_precision=1.0)
    assert got["a"] == choose_threshold(Y, S, 1.0) != choose_threshold(Y, S)  # the target is passed on
    assert got["b"] == choose_threshold(~Y, 1 - S, 1.0)
    assert got["none"]["threshold"] == 1.0 and got["none"]["support"] == 0


def _labels(scores, thresholds):
    arrays = schema.head_arrays(np.asarray(scores, np.float32), ["a", "b"], thresholds)
    return arrays[3].to_pylist(), arrays[1].to_pylist(), arrays[2].to_pylist()


@pytest.mark.parametrize("t", [0.7, 0.1, 0.5, 1 / 3])
def test_a_score_exactly_at_its_threshold_is_labelled(t):
    """The stored float32 score equal to the float32 threshold is over it (0.7 as float32 is below 0.7)."""
    at = np.float32(t)
    below = np.nextafter(at, np.float32(0))
    labels, top, top_score = _labels([[at, 0.0], [below, 0.0], [0.0, at]], [t, t])
    assert labels == [["a"], [], ["b"]]
    assert top == ["a", "a", "b"] and top_score == [float(at), float(below), float(at)]


def test_thresholds_zero_and_one():
    labels, _, _ = _labels([[0.0, 1.0], [1.0, 0.0]], [0.0, 1.0])
    assert labels == [["a", "b"], ["a"]]


def test_no_frames_give_empty_columns():
    arrays = schema.head_arrays(np.zeros((0, 2), np.float32), ["a", "b"], [0.5, 0.5])
    assert [len(a) for a in arrays] == [0, 0, 0, 0]


def _two_class_csv(labelled, tmp_path, classes=("tone", "pulses"), one_fold: str | None = None):
    rows = [
        r
        for r in labelled["csv"].read_text().splitlines()[1:]
        if r.split(",")[1] in classes and r.split(",")[0] not in ("broken.wav", "not_there.wav")
    ]
    assert {r.split(",")[1] for r in rows} == set(classes)
    if one_fold:  # every file of that class in fold 0; the others spread over folds 0-2
        rows = [f"{r},{0 if r.split(',')[1] == one_fold else i % 3}" for i, r in enumerate(rows)]
        header = "path,label,fold"
    else:
        header = "path,label"
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join([header, *(f"{labelled['audio']}/{r}" for r in rows)]) + "\n")
    return csv


def _frame_truth_and_scores(out, head_dir):
    """Held-out scores are not stored; the fitted head's own scores on every frame, computed from weights.npz."""
    doc = json.loads((head_dir / "head.json").read_text())
    t = pq.read_table(out / "frames", columns=["path", "embedding"])
    emb = np.stack(t.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float64)
    with np.load(head_dir / "weights.npz") as npz:
        z = emb @ npz["w0"].astype(np.float64) + npz["b0"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return doc, t.column("path").to_pylist(), e / e.sum(axis=1, keepdims=True)


def test_train_two_classes_with_a_target_precision(plain_out, labelled, tmp_path):
    csv = _two_class_csv(labelled, tmp_path)
    h = train(str(plain_out), str(csv), str(tmp_path / "h"), folds=3, target_precision=0.9)
    assert h.classes == ["pulses", "tone"] and h.activation == "softmax"
    metrics = json.loads((tmp_path / "h" / "metrics.json").read_text())
    assert metrics["target_precision"] == 0.9
    for c in h.classes:
        cal = metrics["calibration"][c]
        assert cal["support"] > 0 and cal["threshold"] == h.thresholds[h.classes.index(c)]
        if cal["reached"]:
            assert cal["precision"] >= 0.9
    loaded = load_head(str(tmp_path / "h"))
    assert loaded.thresholds == h.thresholds and loaded.hyperparameters["target_precision"] == 0.9
    # Two well-separated classes: the head trained on every file tells them apart on every file's mean score.
    doc, paths, scores = _frame_truth_and_scores(plain_out, tmp_path / "h")
    label = dict(r.split(",") for r in csv.read_text().splitlines()[1:])
    paths = np.asarray(paths)
    for p, c in label.items():
        mean = scores[paths == p].mean(axis=0)
        assert doc["classes"][int(mean.argmax())] == c, p


def test_a_class_in_one_fold_is_reported(plain_out, labelled, tmp_path):
    csv = _two_class_csv(labelled, tmp_path, one_fold="tone")
    train(str(plain_out), str(csv), str(tmp_path / "h"))
    problems = json.loads((tmp_path / "h" / "metrics.json").read_text())["problems"]
    assert any("class 'tone': all its files are in one fold" in p for p in problems), problems
