"""Train a head on an output's stored frame embeddings: cross-validated by file, calibrated, then fit on all.

Every frame carries its file's labels (one label per file: multi-class softmax; several: multi-label sigmoid;
window-level labels, :mod:`.windows`: the frames covering a labelled window take its label);
clips are decided by averaging their frames' probabilities. Cross-validation never puts a file's frames on both
sides of a split (folds from the labels' ``fold`` column, else stratified K-fold over files). The held-out
frame probabilities choose the per-class thresholds (:mod:`.calibrate`). scikit-learn does the fitting
(``pip install "yamnet-beam[train]"``); the fitted model is folded into plain layers (the standardisation into
the first one), so the head file holds numbers only.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import posixpath
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from yamnet_beam.analysis.output import Output, open_output
from yamnet_beam.customize.calibrate import calibrate
from yamnet_beam.customize.learn import TrainError, sklearn_module
from yamnet_beam.customize.metrics import CONFUSION_PNG, METRICS_JSON, clip_metrics, confusion_png
from yamnet_beam.model.head import FORBIDDEN_WIDTHS, Head, save_head
from yamnet_beam.table import schema
from yamnet_beam.table.output import scan_parquet
from yamnet_beam.table.schema import list_matrix
from yamnet_beam.uris import absolute_uri

_LOG = logging.getLogger(__name__)
HEAD_TYPES = ("linear", "mlp")


@dataclass
class LabelledSet:
    """The usable labelled files (or windows) with their frames, and what was left out and why."""

    classes: list[str]
    paths: list[str]  # one per file (per window: its file's)
    targets: np.ndarray  # [files, K] 0/1
    folds: list[str] | None  # the labels' fold column, per file
    embeddings: list[np.ndarray]  # per file, [frames, 1024] float32
    multilabel: bool
    problems: list[str] = field(default_factory=list)
    windows: list[tuple[float, float]] | None = None  # window-level labels: each item's start_s, end_s

    def item_names(self) -> list[str]:
        """Each item's name in metrics.json: its path, or for a window ``path@start-end``."""
        if self.windows is None:
            return list(self.paths)
        return [f"{p}@{a:g}-{b:g}" for p, (a, b) in zip(self.paths, self.windows, strict=True)]


def read_labels(labels_csv: str) -> tuple[dict[str, list[str]], dict[str, str], str]:
    """``path -> labels`` (in order, without repeats), ``path -> fold`` and the CSV's directory."""
    uri = absolute_uri(labels_csv)
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        text = fs.cat_file(path).decode("utf-8-sig")
    except FileNotFoundError as e:
        raise TrainError(f"--labels {labels_csv} does not exist") from e
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
        raise TrainError(f"--labels {labels_csv} needs a header with 'path' and 'label' (and optionally 'fold')")
    labels: dict[str, list[str]] = {}
    folds: dict[str, str] = {}
    for i, row in enumerate(reader, start=2):
        p, lab = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not p or not lab:
            raise TrainError(f"--labels {labels_csv} line {i}: empty path or label")
        if lab not in labels.setdefault(p, []):
            labels[p].append(lab)
        if "fold" in reader.fieldnames and (row.get("fold") or "").strip():
            folds[p] = row["fold"].strip()
    if not labels:
        raise TrainError(f"--labels {labels_csv} has no rows")
    if folds and len(folds) != len(labels):
        raise TrainError(f"--labels {labels_csv}: give a fold for every path or for none")
    return labels, folds, (fs.unstrip_protocol(posixpath.dirname(path)) if "://" in uri else posixpath.dirname(path))


def _resolve(entry: str, base: str, known: set[str]) -> str | None:
    """A labels path as stored in files/: as given, or relative to the labels CSV (like manifests)."""
    if entry in known:
        return entry
    if "://" not in entry and not posixpath.isabs(entry):
        candidate = posixpath.normpath(posixpath.join(base, entry))
        if candidate in known:
            return candidate
    return None


def load_labelled(out: Output, labels_csv: str, folds: int, min_frame_score: float = 0.0) -> LabelledSet:
    """Joins the labels with the output's files/ and frames/, reporting whatever cannot be used.

    A class needs ``folds`` usable files for stratified K-fold, or 2 when the labels give the folds.
    """
    labels, folds_of, base = read_labels(labels_csv)
    min_files = 2 if folds_of else folds
    files = (
        pa.concat_tables(
            [
                pa.Table.from_batches([b])
                for b in scan_parquet(out.fs, out.file_files, ["path", "status", "error", "frames"])
            ]
        )
        if out.file_files
        else None
    )
    status = {} if files is None else {r["path"]: r for r in files.to_pylist()}
    problems: list[str] = []
    chosen: dict[str, list[str]] = {}
    chosen_folds: dict[str, str] = {}
    for entry, labs in labels.items():
        p = _resolve(entry, base, set(status))
        if p is None:
            problems.append(f"{entry}: not in {out.uri}/files/ (run the job on it first, or fix the path)")
        elif status[p]["status"] != schema.STATUS_OK:
            problems.append(f"{entry}: skipped, its files/ row is an error: {status[p]['error']}")
        elif not status[p]["frames"]:
            problems.append(f"{entry}: skipped, no frames")
        else:
            chosen[p] = labs
            if folds_of:
                chosen_folds[p] = folds_of[entry]
    emb = _frame_embeddings(out, sorted(chosen), min_frame_score)
    for p in sorted(set(chosen) - set(emb)):  # before counting: a class must have enough files left
        problems.append(f"{p}: skipped, no frame reaches --min_frame_score {min_frame_score}")
        del chosen[p]
    counts: dict[str, int] = {}
    for labs in chosen.values():
        for lab in labs:
            counts[lab] = counts.get(lab, 0) + 1
    too_few = sorted(c for c, n in counts.items() if n < min_files)
    for c in too_few:
        problems.append(f"class {c!r}: dropped, {counts[c]} usable file(s), cross-validation needs {min_files}")
    classes = sorted(c for c in counts if c not in too_few)
    chosen = {p: [lab for lab in labs if lab in classes] for p, labs in chosen.items()}
    chosen = {p: labs for p, labs in chosen.items() if labs}
    if len(classes) < 2:
        for msg in problems:  # the full list, with -v; the error keeps to one short line
            _LOG.info("%s", msg)
        first = problems[0] if not problems or len(problems[0]) <= 90 else problems[0][:89] + "…"
        more = f" (and {len(problems) - 1} more: -v lists them)" if len(problems) > 1 else ""
        raise TrainError(
            f"need at least 2 classes with {min_files} or more usable files each, found {len(classes)}: "
            + (f"{first}{more}" if problems else "label more files")
        )
    multilabel = any(len(labs) > 1 for labs in chosen.values())
    kept = sorted(chosen)
    targets = np.array([[c in chosen[p] for c in classes] for p in kept], dtype=np.int8)
    return LabelledSet(
        classes=classes,
        paths=kept,
        targets=targets,
        folds=[chosen_folds[p] for p in kept] if chosen_folds else None,
        embeddings=[emb[p] for p in kept],
        multilabel=multilabel,
        problems=problems,
    )


def _frame_embeddings(out: Output, paths: list[str], min_frame_score: float) -> dict[str, np.ndarray]:
    wanted = pa.array(paths, pa.string())
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for batch in out.scan(["path", "frame", "embedding", "top_score"]):
        batch = batch.filter(pc.is_in(batch.column("path"), value_set=wanted))
        if min_frame_score > 0:
            batch = batch.filter(pc.greater_equal(batch.column("top_score"), min_frame_score))
        if not batch.num_rows:
            continue
        emb = list_matrix(batch.column("embedding")).astype(np.float32)
        frame = batch.column("frame").to_numpy()
        bpaths = np.asarray(batch.column("path").to_pylist(), dtype=object)
        for p in np.unique(bpaths):
            m = bpaths == p
            parts.setdefault(p, []).append((frame[m], emb[m]))
    result = {}
    for p, chunks in parts.items():
        frames = np.concatenate([f for f, _ in chunks])
        result[p] = np.concatenate([e for _, e in chunks])[np.argsort(frames, kind="stable")]
    return result


def file_folds(data: LabelledSet, folds: int, seed: int) -> np.ndarray:
    """The held-out fold of each file: the labels' fold column, else stratified (multi-class) K-fold over files."""
    if data.folds is not None:
        names = sorted(set(data.folds))
        if len(names) < 2:
            raise TrainError("the labels' fold column has one value: give at least 2 folds")
        return np.array([names.index(f) for f in data.folds])
    if data.windows is not None:
        from yamnet_beam.customize.windows import group_folds

        return group_folds(data.targets, data.paths, folds, seed)
    ms = sklearn_module("model_selection")
    n = len(data.paths)
    if data.multilabel:
        splitter = ms.KFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(n))
    else:
        splitter = ms.StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(n), data.targets.argmax(axis=1))
    out = np.zeros(n, dtype=np.int64)
    for i, (_, test) in enumerate(splits):
        out[test] = i
    return out


# --------------------------------------------------------------------------------------------
# Estimators and their conversion to plain layers


def make_estimator(head_type: str, params: dict[str, Any]):
    """The scikit-learn estimator a head type fits on standardised embeddings (one per class if multi-label)."""
    if head_type == "linear":
        lm = sklearn_module("linear_model")
        return lm.LogisticRegression(C=params["C"], max_iter=params["max_iter"])
    nn = sklearn_module("neural_network")
    return nn.MLPClassifier(
        hidden_layer_sizes=(params["hidden"],),
        alpha=params["alpha"],
        max_iter=params["max_iter"],
        random_state=params["seed"],
    )


def _positive_proba(model, xs: np.ndarray) -> np.ndarray:
    classes = list(model.classes_)
    return model.predict_proba(xs)[:, classes.index(1)] if 1 in classes else np.zeros(len(xs))


class Fitted:
    """A fitted scaler + estimator(s): ``predict_proba`` (held-out scores) and ``layers`` (the head file)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, head_type: str, multilabel: bool, params: dict[str, Any]):
        self.scaler = sklearn_module("preprocessing").StandardScaler().fit(x)
        xs = self.scaler.transform(x)
        self.head_type, self.multilabel = head_type, multilabel
        if multilabel and head_type == "linear":
            self.models = [make_estimator(head_type, params).fit(xs, y[:, k]) for k in range(y.shape[1])]
        else:
            target = y if multilabel else y.argmax(axis=1)
            self.models = [make_estimator(head_type, params).fit(xs, target)]

    def predict_proba(self, x: np.ndarray, num_classes: int) -> np.ndarray:
        """``[N, num_classes]``; a class the training split lacked (all its files in one fold) scores 0."""
        xs = self.scaler.transform(x)
        if len(self.models) > 1:
            return np.stack([_positive_proba(m, xs) for m in self.models], axis=1)
        m = self.models[0]
        if self.multilabel:
            return m.predict_proba(xs)
        out = np.zeros((len(x), num_classes))
        out[:, np.asarray(m.classes_, dtype=int)] = m.predict_proba(xs)
        return out

    def layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.head_type == "linear":
            w = np.concatenate([m.coef_.T for m in self.models], axis=1)
            b = np.concatenate([m.intercept_ for m in self.models])
            layers = [(w, b)]
        else:
            m = self.models[0]
            layers = [(m.coefs_[0], m.intercepts_[0]), (m.coefs_[1], m.intercepts_[1])]
        if not self.multilabel and layers[-1][0].shape[1] == 1:  # binary: softmax([-z/2, z/2]) = [1-s(z), s(z)]
            w, b = layers[-1]
            layers[-1] = (np.concatenate([-w / 2, w / 2], axis=1), np.concatenate([-b / 2, b / 2]))
        mean, scale = self.scaler.mean_, self.scaler.scale_
        w0, b0 = layers[0]
        layers[0] = (w0 / scale[:, None], b0 - (mean / scale) @ w0)
        return [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]


# --------------------------------------------------------------------------------------------


def cross_validate(data: LabelledSet, fold_of_file: np.ndarray, head_type: str, params: dict[str, Any]) -> np.ndarray:
    """Held-out frame probabilities ``[frames, K]`` (file order), each from a model that never saw its file."""
    counts = np.array([len(e) for e in data.embeddings])
    x = np.concatenate(data.embeddings)
    y = np.repeat(data.targets, counts, axis=0)
    frame_fold = np.repeat(fold_of_file, counts)
    heldout = np.zeros((len(x), len(data.classes)), np.float64)
    for f in np.unique(fold_of_file):
        test = frame_fold == f
        seen = np.unique(y[~test].argmax(axis=1))
        if not data.multilabel and len(seen) == 1:  # every other class is in this fold: only that one can be told
            heldout[np.flatnonzero(test), seen[0]] = 1.0
            continue
        fitted = Fitted(x[~test], y[~test], head_type, data.multilabel, params)
        heldout[test] = fitted.predict_proba(x[test], len(data.classes))
    return heldout


def train(
    output: str,
    labels_csv: str,
    head_dir: str,
    head_type: str = "linear",
    folds: int = 5,
    target_precision: float | None = None,
    min_frame_score: float = 0.0,
    hidden: int = 256,
    c: float = 1.0,
    alpha: float = 1e-4,
    max_iter: int = 1000,
    seed: int = 0,
    frame_source=None,
) -> Head:
    """Cross-validates, calibrates, fits on every labelled file and writes ``head_dir`` (head, metrics.json).

    ``frame_source``: window labels only, frames already in memory (:func:`.windows.load_windows`)."""
    if head_type not in HEAD_TYPES:
        raise TrainError(f"--head_type must be one of {HEAD_TYPES}, got {head_type!r}")
    if folds < 2:
        raise TrainError(f"--folds must be at least 2, got {folds}")
    if target_precision is not None and not 0 < target_precision <= 1:
        raise TrainError(f"--target_precision is a precision in (0, 1], got {target_precision}")
    sklearn_module("linear_model")  # fail before reading anything when scikit-learn is missing
    out = open_output(output)
    model_sha = out.run_value("model_sha256")
    if not model_sha:
        raise TrainError(f"{output} records no model SHA-256 (manifest.json or table metadata): rerun the job")
    from yamnet_beam.customize.windows import is_window_labels, load_windows

    if is_window_labels(labels_csv):
        data = load_windows(out, labels_csv, frame_source=frame_source)
    else:
        data = load_labelled(out, labels_csv, folds, min_frame_score=min_frame_score)
    if len(data.classes) in FORBIDDEN_WIDTHS:
        raise TrainError(
            f"{len(data.classes)} classes: a head as wide as YAMNet's embedding or scores cannot be exported; "
            "merge some"
        )
    params = {"C": c, "alpha": alpha, "hidden": hidden, "max_iter": max_iter, "seed": seed}
    fold_of_file = file_folds(data, folds, seed)
    for k, cl in enumerate(data.classes):
        if len(np.unique(fold_of_file[data.targets[:, k] == 1])) < 2:
            data.problems.append(f"class {cl!r}: all its files are in one fold, so its held-out scores are 0")
    for msg in data.problems:  # also in metrics.json
        _LOG.warning("%s", msg)
    heldout = cross_validate(data, fold_of_file, head_type, params)
    counts = np.array([len(e) for e in data.embeddings])
    frame_truth = np.repeat(data.targets, counts, axis=0)
    calibration = calibrate(frame_truth, heldout, data.classes, target_precision)
    thresholds = [calibration[cl]["threshold"] for cl in data.classes]
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    clip_scores = np.add.reduceat(heldout, starts, axis=0) / counts[:, None]
    metrics = {
        "clip": clip_metrics(data, clip_scores, thresholds),
        "calibration": calibration,
        "target_precision": target_precision,
        "files": len(set(data.paths)),
        **({"windows": len(data.paths)} if data.windows is not None else {}),
        "frames": int(counts.sum()),
        "folds": {p: int(f) for p, f in zip(data.item_names(), fold_of_file, strict=True)},
        "problems": data.problems,
        "trained_on": {"output": out.uri, "model_uri": out.model_uri, "model_sha256": model_sha},  # export's default
    }
    fitted = Fitted(np.concatenate(data.embeddings), frame_truth, head_type, data.multilabel, params)
    head = Head(
        classes=data.classes,
        layers=fitted.layers(),
        activation="sigmoid" if data.multilabel else "softmax",
        thresholds=thresholds,
        yamnet_sha256=model_sha,
        output_fingerprint=out.run_value("fingerprint", ""),
        name=posixpath.basename(absolute_uri(head_dir).rstrip("/")) or "head",
        metrics={k: metrics[k] for k in ("clip", "files", "windows", "frames") if k in metrics},
        hyperparameters={
            "head_type": head_type,
            "folds": int(len(np.unique(fold_of_file))),
            "fold_source": "labels"
            if data.folds is not None
            else "grouped"
            if data.windows is not None
            else "stratified"
            if not data.multilabel
            else "kfold",
            "labels": "windows" if data.windows is not None else "files",
            "min_frame_score": min_frame_score,
            "target_precision": target_precision,
            **({"C": c} if head_type == "linear" else {"hidden": hidden, "alpha": alpha}),
            "max_iter": max_iter,
            "seed": seed,
            "standardized": True,
        },
    )
    save_head(head, head_dir)
    fs, root = fsspec.core.url_to_fs(absolute_uri(head_dir))
    fs.pipe(f"{root.rstrip('/')}/{METRICS_JSON}", (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())
    confusion_png(metrics, data.classes, f"{root.rstrip('/')}/{CONFUSION_PNG}", fs)
    return head
