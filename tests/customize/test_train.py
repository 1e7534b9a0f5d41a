"""train: cross-validation by file, metrics and thresholds against an independent scikit-learn computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.support.helpers import png_stats
from yamnet_beam.customize.train import TrainError, train
from yamnet_beam.model.head import HeadError, load_head


def frames_by_path(out: Path) -> dict[str, np.ndarray]:
    """Each file's embeddings in frame order, read straight from the Parquet parts."""
    t = pq.read_table(out / "frames", columns=["path", "frame", "embedding"]).sort_by(
        [("path", "ascending"), ("frame", "ascending")]
    )
    emb = np.stack(t.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    paths = np.asarray(t.column("path").to_pylist())
    return {p: emb[paths == p] for p in np.unique(paths)}


@pytest.fixture(scope="module")
def metrics(head_dir) -> dict:
    return json.loads((head_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def independent(plain_out, metrics, head):
    """Held-out frame probabilities from scikit-learn's own pipeline on the folds train reported."""
    frames = frames_by_path(plain_out)
    folds = metrics["folds"]
    paths = sorted(folds)
    label = {p: Path(p).name.rsplit("_", 1)[0] for p in paths}  # "tone_3.wav" -> tone, "speech_16k_0.5" -> speech_16k
    label = {p: "speech" if lab.startswith("speech") else lab for p, lab in label.items()}
    classes = head.classes
    heldout = {}
    for f in sorted(set(folds.values())):
        train_p = [p for p in paths if folds[p] != f]
        test_p = [p for p in paths if folds[p] == f]
        x = np.concatenate([frames[p] for p in train_p])
        y = np.concatenate([[classes.index(label[p])] * len(frames[p]) for p in train_p])
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(x, y)
        for p in test_p:
            heldout[p] = model.predict_proba(frames[p])
    return {"paths": paths, "label": label, "heldout": heldout, "frames": frames, "classes": classes}


def test_no_file_is_on_both_sides_and_folds_are_stratified(metrics, independent):
    folds = metrics["folds"]
    assert sorted(folds) == independent["paths"]  # each file in exactly one held-out fold
    assert len(set(folds.values())) == 3
    for f in set(folds.values()):
        held = {independent["label"][p] for p in folds if folds[p] == f}
        assert held == set(independent["classes"])  # every class in every fold (6 files per class, 3 folds)


def test_cv_metrics_equal_scikit_learn_on_the_same_splits(metrics, independent):
    classes, label = independent["classes"], independent["label"]
    truth = [classes.index(label[p]) for p in independent["paths"]]
    pred = [int(independent["heldout"][p].mean(axis=0).argmax()) for p in independent["paths"]]
    clip = metrics["clip"]
    assert clip["accuracy"] == pytest.approx(accuracy_score(truth, pred), abs=1e-12)
    assert clip["confusion_matrix"] == confusion_matrix(truth, pred).tolist()
    p, r, f, s = precision_recall_fscore_support(truth, pred, zero_division=0)
    for i, c in enumerate(classes):
        got = clip["per_class"][c]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx((p[i], r[i], f[i], s[i]))
    assert metrics["files"] == len(truth) == 30


def test_thresholds_reproduce_the_stated_precision_and_recall(metrics, independent, head):
    classes, label = independent["classes"], independent["label"]
    scores = np.concatenate([independent["heldout"][p] for p in independent["paths"]])
    truth = np.concatenate([[classes.index(label[p])] * len(independent["frames"][p]) for p in independent["paths"]])
    for k, c in enumerate(classes):
        cal = metrics["calibration"][c]
        assert head.thresholds[k] == cal["threshold"]
        # As the product applies it: to float32 scores (head_scores is float32), at a float32 threshold.
        pred = scores[:, k].astype(np.float32) >= np.float32(cal["threshold"])
        assert precision_score(truth == k, pred) == pytest.approx(cal["precision"], abs=1e-9)
        assert recall_score(truth == k, pred) == pytest.approx(cal["recall"], abs=1e-9)


def test_final_head_scores_equal_scikit_learn_fit_on_every_file(independent, head):
    classes, label, frames = independent["classes"], independent["label"], independent["frames"]
    x = np.concatenate([frames[p] for p in independent["paths"]])
    y = np.concatenate([[classes.index(label[p])] * len(frames[p]) for p in independent["paths"]])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(x, y)
    np.testing.assert_allclose(head.scores(x), model.predict_proba(x), atol=1e-5)


def test_missing_files_and_error_rows_are_reported(metrics):
    problems = "\n".join(metrics["problems"])
    assert "not_there.wav: not in" in problems
    assert "broken.wav: skipped, its files/ row is an error" in problems


def test_a_class_with_too_few_files_is_dropped_and_reported(plain_out, labelled, tmp_path):
    csv = tmp_path / "labels.csv"
    rows = labelled["csv"].read_text().splitlines()
    base = labelled["audio"]
    rows = [rows[0]] + [f"{base}/{r}" if not r.startswith("/") else r for r in rows[1:]]  # absolute paths work too
    rows.append(f"{base}/tone_0.wav,rare")  # one file only: too few for 3 folds; tone_0 stays a tone
    csv.write_text("\n".join(rows) + "\n")
    h = train(str(plain_out), str(csv), str(tmp_path / "h"), folds=3)
    problems = json.loads((tmp_path / "h" / "metrics.json").read_text())["problems"]
    assert any("class 'rare': dropped, 1 usable file(s)" in p for p in problems)
    assert "rare" not in h.classes and len(h.classes) == 5


def test_fold_column_sets_the_splits(plain_out, labelled, tmp_path):
    rows = [
        r
        for r in labelled["csv"].read_text().splitlines()[1:]
        if r.split(",")[0] not in ("broken.wav", "not_there.wav")
    ]
    rows = ["path,label,fold"] + [f"{r},{i % 2}" for i, r in enumerate(rows)]
    (labelled["audio"] / "folds.csv").write_text("\n".join(rows) + "\n")
    train(str(plain_out), str(labelled["audio"] / "folds.csv"), str(tmp_path / "h"))
    got = json.loads((tmp_path / "h" / "metrics.json").read_text())["folds"]
    expected = {f"{labelled['audio']}/{r.split(',')[0]}": int(r.split(",")[2]) for r in rows[1:]}
    assert got == expected


def _fold_frames(independent, folds, f):
    """Training frames (x, file index per frame) of fold ``f``'s complement and the held-out paths."""
    paths, frames = independent["paths"], independent["frames"]
    train_p = [p for p in paths if folds[p] != f]
    return train_p, [p for p in paths if folds[p] == f], np.concatenate([frames[p] for p in train_p])


def test_multilabel_head_metrics_equal_per_class_scikit_learn(multi_head_dir, independent):
    """Several labels per path: one sigmoid per class; mAP and macro-F1 of held-out clip means, as scikit-learn."""
    head = load_head(str(multi_head_dir))
    metrics = json.loads((multi_head_dir / "metrics.json").read_text())
    assert head.activation == "sigmoid" and head.classes == sorted([*independent["classes"], "tonal"])
    folds, frames, label = metrics["folds"], independent["frames"], independent["label"]
    paths = independent["paths"]

    def labels_of(p):
        return {label[p]} | ({"tonal"} if label[p] in ("tone", "chirp") else set())

    truth = np.array([[c in labels_of(p) for c in head.classes] for p in paths], dtype=int)
    clip = {}
    for f in sorted(set(folds.values())):
        train_p, test_p, x = _fold_frames(independent, folds, f)
        y = np.concatenate([np.repeat(truth[[paths.index(p)]], len(frames[p]), axis=0) for p in train_p])
        models = [
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y[:, k])
            for k in range(y.shape[1])
        ]
        for p in test_p:
            clip[p] = np.stack([m.predict_proba(frames[p])[:, 1] for m in models], axis=1).mean(axis=0)
    scores = np.stack([clip[p] for p in paths])
    assert metrics["clip"]["mAP"] == pytest.approx(average_precision_score(truth, scores, average="macro"), abs=1e-9)
    pred = scores >= np.asarray(head.thresholds)[None, :]
    assert metrics["clip"]["macro_f1"] == pytest.approx(
        f1_score(truth, pred, average="macro", zero_division=0), abs=1e-9
    )
    x = np.concatenate([frames[p] for p in paths])
    assert 0.02 < head.scores(x)[:, head.classes.index("tonal")].mean() < 0.98  # a real second label, not constant


def test_mlp_head_equals_scikit_learn_mlp(mlp_head_dir, independent):
    """--head_type mlp: held-out clip accuracy and the final head's scores equal scikit-learn's MLPClassifier."""
    head = load_head(str(mlp_head_dir))
    metrics = json.loads((mlp_head_dir / "metrics.json").read_text())
    classes, label, frames, paths = (independent[k] for k in ("classes", "label", "frames", "paths"))
    folds = metrics["folds"]

    def mlp():
        return make_pipeline(
            StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-4, max_iter=1000, random_state=0)
        )

    def targets(ps):
        return np.concatenate([[classes.index(label[p])] * len(frames[p]) for p in ps])

    pred = {}
    for f in sorted(set(folds.values())):
        train_p, test_p, x = _fold_frames(independent, folds, f)
        model = mlp().fit(x, targets(train_p))
        for p in test_p:
            pred[p] = int(model.predict_proba(frames[p]).mean(axis=0).argmax())
    truth = [classes.index(label[p]) for p in paths]
    assert metrics["clip"]["accuracy"] == pytest.approx(accuracy_score(truth, [pred[p] for p in paths]), abs=1e-12)
    assert [w.shape for w, _ in head.layers] == [(1024, 64), (64, len(classes))]
    x = np.concatenate([frames[p] for p in paths])
    np.testing.assert_allclose(head.scores(x), mlp().fit(x, targets(paths)).predict_proba(x), atol=1e-5)


def test_min_frame_score_fits_on_the_frames_that_reach_it(plain_out, labelled, independent, tmp_path):
    """Frames below the score are left out; a file left with none is reported, then classes are counted."""
    t = pq.read_table(plain_out / "frames", columns=["path", "top_score"])
    paths = np.asarray(t.column("path").to_pylist())
    top = t.column("top_score").to_numpy()
    usable = independent["paths"]
    best = {p: top[paths == p].max() for p in usable}
    cut = float(np.nextafter(np.float32(sorted(best.values())[1]), np.float32(1)))  # the two weakest files lose all
    kept = {p: int((top[paths == p] >= cut).sum()) for p in usable}
    dropped = sorted(p for p in usable if kept[p] == 0)
    assert len(dropped) >= 2
    left = [p for p in usable if kept[p]]
    per_class = {c: sum(independent["label"][p] == c for p in left) for c in independent["classes"]}
    left = [p for p in left if per_class[independent["label"][p]] >= 3]
    train(str(plain_out), str(labelled["csv"]), str(tmp_path / "h"), folds=3, min_frame_score=cut)
    m = json.loads((tmp_path / "h" / "metrics.json").read_text())
    assert sorted(m["folds"]) == sorted(left) and m["frames"] == sum(kept[p] for p in left)
    for p in dropped:
        assert f"{p}: skipped, no frame reaches --min_frame_score" in "\n".join(m["problems"])


def test_confusion_matrix_png(head_dir, metrics):
    stats = png_stats((head_dir / "confusion.png").read_bytes())
    assert stats["width"] > 200 and stats["colours"] > 20
    assert np.asarray(metrics["clip"]["confusion_matrix"]).sum() == metrics["files"]


def test_tampered_or_foreign_heads_are_refused(head_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(head_dir, copy)
    w = bytearray((copy / "weights.npz").read_bytes())
    w[-100] ^= 1
    (copy / "weights.npz").write_bytes(bytes(w))
    with pytest.raises(HeadError, match="not the weights head.json was written with"):
        load_head(str(copy))
    with pytest.raises(HeadError, match="has no head.json"):
        load_head(str(tmp_path))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "head.json").write_text('{"format": "something else"}')
    with pytest.raises(HeadError, match="not a yamnet-beam head file"):
        load_head(str(tmp_path / "x"))


def test_bad_requests_fail_before_work(plain_out, labelled, tmp_path):
    with pytest.raises(TrainError, match="--folds must be at least 2"):
        train(str(plain_out), str(labelled["csv"]), str(tmp_path / "h"), folds=1)
    (tmp_path / "bad.csv").write_text("file,class\na,b\n")
    with pytest.raises(TrainError, match="needs a header with 'path' and 'label'"):
        train(str(plain_out), str(tmp_path / "bad.csv"), str(tmp_path / "h"))


def test_too_few_usable_classes_is_one_short_line(plain_out, labelled, tmp_path, capsys):
    """Every class short of files: the error names the first problem and counts the rest, under 200 characters."""
    from yamnet_beam.cli import main

    names = [r.split(",")[0] for r in labelled["csv"].read_text().splitlines()[1:]][:12]
    csv = labelled["audio"] / "one_file_per_class.csv"
    csv.write_text("path,label\n" + "".join(f"{n},class_{i}\n" for i, n in enumerate(names)))
    assert main(["train", str(plain_out), "--labels", str(csv), "-o", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 200, err
    assert err.startswith("yamnet-beam: error: need at least 2 classes with 5 or more usable files each, found 0: ")
    assert "class 'class_0': dropped, 1 usable file(s)" in err and err.endswith(" (and 11 more: -v lists them)\n")
    assert not (tmp_path / "h").exists()
