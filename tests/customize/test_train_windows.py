"""train on window-level labels: frames covering a window take its label, folds grouped by file, against
scikit-learn fit on the frames picked by hand (hop 0.975 s: window [a, b) hops is frames a..b-1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.customize.test_train import frames_by_path
from yamnet_beam.customize.learn import TrainError
from yamnet_beam.customize.train import train
from yamnet_beam.customize.windows import covering_frames
from yamnet_beam.model.head import load_head
from yamnet_beam.table.labels import LabelStore, WindowLabel

HOP = 0.975


@pytest.mark.parametrize(
    ("starts", "window", "expected"),
    [
        ([0.0, 0.975, 1.95], (0.0, 0.975), [0]),  # hop = window: one frame
        ([0.0, 0.975, 1.95], (0.0, 1.95), [0, 1]),
        ([0.0, 0.48, 0.96, 1.44], (0.0, 0.975), [0, 1]),  # frame 1 has 0.495 s of its 0.975 s inside
        ([0.0, 0.48, 0.96, 1.44], (1.0, 1.2), [1, 2]),  # a short window: the frames holding it whole
        ([0.0, 0.48, 0.96, 1.44], (0.9, 1.0), [0, 1]),  # frame 2 holds only 0.04 s of its 0.1 s
        ([0.0, 0.975], (5.0, 6.0), []),  # past the end
    ],
)
def test_covering_frames(starts, window, expected):
    s = np.asarray(starts)
    assert covering_frames(s, s + 0.975, *window).tolist() == expected


def _windows(plain_out, labelled):
    """tone: its first two hops; chirp: its last two; noise_band: the middle hop (absolute stored paths)."""
    base = labelled["audio"]
    rows = []
    for i in range(6):
        rows.append((f"{base}/tone_{i}.wav", 0.0, 2 * HOP, "tone", (0, 1)))
        rows.append((f"{base}/chirp_{i}.wav", HOP, 3 * HOP, "chirp", (1, 2)))
        rows.append((f"{base}/noise_band_{i}.wav", HOP, 2 * HOP, "noise_band", (1,)))
    return rows


@pytest.fixture(scope="module")
def window_head(plain_out, labelled, tmp_path_factory):
    d = tmp_path_factory.mktemp("win")
    rows = _windows(plain_out, labelled)
    csv = d / "windows.csv"
    csv.write_text("path,start_s,end_s,label\n" + "".join(f"{p},{a},{b},{c}\n" for p, a, b, c, _ in rows))
    head = train(str(plain_out), str(csv), str(d / "head"), folds=3)
    return {"head": head, "rows": rows, "metrics": json.loads((d / "head" / "metrics.json").read_text())}


def test_window_head_equals_scikit_learn_on_the_covered_frames(plain_out, window_head):
    frames = frames_by_path(plain_out)
    head, rows = window_head["head"], window_head["rows"]
    assert head.classes == ["chirp", "noise_band", "tone"]
    x = np.concatenate([frames[p][list(idx)] for p, _, _, _, idx in rows])
    y = np.concatenate([[head.classes.index(c)] * len(idx) for _, _, _, c, idx in rows])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(x, y)
    np.testing.assert_allclose(head.scores(x), model.predict_proba(x), atol=1e-5)
    assert window_head["metrics"]["frames"] == len(x) and window_head["metrics"]["windows"] == len(rows)


def test_window_folds_are_grouped_by_file_and_cv_equals_scikit_learn(plain_out, window_head):
    frames = frames_by_path(plain_out)
    head, rows, metrics = window_head["head"], window_head["rows"], window_head["metrics"]
    folds = {k.rsplit("@", 1)[0]: v for k, v in metrics["folds"].items()}
    assert len(folds) == len(rows) == len(metrics["folds"])  # one window per file here: each in one fold
    assert len(set(folds.values())) == 3
    correct = 0
    for f in set(folds.values()):
        tr = [r for r in rows if folds[r[0]] != f]
        x = np.concatenate([frames[p][list(idx)] for p, _, _, _, idx in tr])
        y = np.concatenate([[head.classes.index(c)] * len(idx) for _, _, _, c, idx in tr])
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(x, y)
        for p, _, _, c, idx in (r for r in rows if folds[r[0]] == f):
            correct += int(model.predict_proba(frames[p][list(idx)]).mean(axis=0).argmax() == head.classes.index(c))
    assert metrics["clip"]["accuracy"] == pytest.approx(correct / len(rows), abs=1e-12)


def test_explorer_labels_train_positive_against_not_and_leave_uncertain_out(plain_out, labelled, tmp_path):
    base = labelled["audio"]
    store = LabelStore(str(tmp_path / "o"))
    labs = [WindowLabel(f"{base}/tone_{i}.wav", 0.0, HOP, "tone", "positive", "q", 1.0) for i in range(4)]
    labs += [WindowLabel(f"{base}/chirp_{i}.wav", 0.0, HOP, "tone", "negative", "q", 2.0) for i in range(4)]
    labs.append(WindowLabel(f"{base}/pulses_0.wav", 0.0, HOP, "tone", "uncertain", "q", 3.0))
    labs.append(WindowLabel(f"{base}/tone_3.wav", 0.0, HOP, "tone", "uncertain", "q", 4.0))  # changed mind: out
    store.append(labs)
    head = train(str(plain_out), store.dir, str(tmp_path / "h"), folds=3)
    metrics = json.loads((tmp_path / "h" / "metrics.json").read_text())
    assert head.classes == ["not tone", "tone"]
    assert metrics["windows"] == 7 and metrics["frames"] == 7
    assert "2 uncertain window(s): kept for review, not trained on" in metrics["problems"]
    fold_of = {k.split("@")[0].rsplit("/", 1)[1]: v for k, v in metrics["folds"].items()}
    assert "tone_3.wav" not in fold_of and "pulses_0.wav" not in fold_of
    frames = frames_by_path(plain_out)
    paths = [f"{base}/tone_{i}.wav" for i in range(3)] + [f"{base}/chirp_{i}.wav" for i in range(4)]
    x = np.stack([frames[p][0] for p in paths])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(x, [1] * 3 + [0] * 4)
    np.testing.assert_allclose(head.scores(x), model.predict_proba(x), atol=1e-5)
    assert load_head(str(tmp_path / "h")).hyperparameters["labels"] == "windows"


def test_only_positives_is_one_line_saying_to_label_negatives(plain_out, labelled, tmp_path):
    csv = tmp_path / "w.csv"
    base = labelled["audio"]
    csv.write_text("path,start_s,end_s,class,label\n" + f"{base}/tone_0.wav,0,1,tone,positive\n")
    with pytest.raises(TrainError, match="negatives train 'not <class>'"):
        train(str(plain_out), str(csv), str(tmp_path / "h"))
