"""Window-level labels for ``train``: a CSV ``path,start_s,end_s,label[,fold]`` (label: a class name), the
same with ``class,label`` (label: positive / negative / uncertain, as the explorer exports), or the explorer's
labels store (``OUTPUT/labels/`` or one of its ``.jsonl`` files).

Each labelled window becomes one training item: the frames it covers take its label. A frame covers a window
when at least half of the frame's 0.975 s lies inside it, or (for a window shorter than that) at least half of
the window lies inside the frame. Negatives for class C train a class "not C"; uncertain labels are excluded
from training and counted for review. Cross-validation stays grouped by file (:func:`group_folds`).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from yamnet_beam import framing
from yamnet_beam.analysis.output import Output
from yamnet_beam.customize.learn import TrainError, sklearn_module
from yamnet_beam.table import labels as store
from yamnet_beam.table import schema
from yamnet_beam.table.schema import list_matrix
from yamnet_beam.uris import absolute_uri

HALF_WINDOW_S = framing.WINDOW_SECONDS / 2


@dataclass(frozen=True)
class Window:
    path: str
    start_s: float
    end_s: float
    cls: str | None  # the class it trains; None: uncertain (kept for review, not trained on)
    fold: str | None = None


def is_window_labels(labels: str) -> bool:
    """A labels store (directory or .jsonl) or a CSV whose header has ``start_s`` and ``end_s``."""
    local = absolute_uri(labels)
    if "://" not in local and (os.path.isdir(local) or local.endswith(".jsonl")):
        return True
    fs, path = fsspec.core.url_to_fs(local)
    try:
        with fs.open(path, "rb") as f:
            header = f.readline().decode("utf-8-sig")
    except (FileNotFoundError, IsADirectoryError):
        return False
    names = {c.strip() for c in next(csv.reader([header]), [])}
    return {"start_s", "end_s"} <= names


def read_windows(labels: str) -> list[Window]:
    """The labelled windows, the latest label of each window and class winning (the store keeps every click)."""
    local = absolute_uri(labels)
    if "://" not in local and (os.path.isdir(local) or local.endswith(".jsonl")):
        rows = store.latest(store.read_labels(local))
        if not rows:
            raise TrainError(f"--labels {labels} holds no labels")
        return [Window(r.path, r.start_s, r.end_s, store.training_class(r)) for r in rows]
    fs, path = fsspec.core.url_to_fs(local)
    reader = csv.DictReader(io.StringIO(fs.cat_file(path).decode("utf-8-sig")))
    names = set(reader.fieldnames or ())
    if not {"path", "start_s", "end_s", "label"} <= names:
        raise TrainError(f"--labels {labels} needs a header with path, start_s, end_s and label (and optionally fold)")
    out: list[Window] = []
    explorer = "class" in names
    for i, row in enumerate(reader, start=2):
        try:
            start, end = float(row["start_s"]), float(row["end_s"])
        except (TypeError, ValueError) as e:
            raise TrainError(f"--labels {labels} line {i}: start_s and end_s must be numbers") from e
        p, lab = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not p or not lab or not 0 <= start < end:
            raise TrainError(f"--labels {labels} line {i}: needs a path, a label and 0 <= start_s < end_s")
        if explorer:
            wl = store.WindowLabel(p, start, end, (row.get("class") or "").strip(), lab)
            try:
                store.check(wl)
            except store.LabelError as e:
                raise TrainError(f"--labels {labels} line {i}: {e}") from e
            cls = store.training_class(wl)
        else:
            cls = lab
        out.append(Window(p, start, end, cls, (row.get("fold") or "").strip() or None))
    if not out:
        raise TrainError(f"--labels {labels} has no rows")
    if any(w.fold for w in out) and not all(w.fold for w in out):
        raise TrainError(f"--labels {labels}: give a fold for every window or for none")
    return out


def covering_frames(frame_start: np.ndarray, frame_end: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    """Indices of the frames that cover ``[start_s, end_s]`` (see the module docstring)."""
    overlap = np.minimum(frame_end, end_s) - np.maximum(frame_start, start_s)
    span = min(end_s - start_s, framing.WINDOW_SECONDS)
    return np.flatnonzero((overlap > 0) & (overlap >= np.minimum(HALF_WINDOW_S, span / 2) - 1e-9))


def frame_table(out: Output, paths: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per path: frame start_s, window end (start + 0.975 s) and embeddings, in frame order.

    Reads the path column first and decodes embeddings only from the row groups that hold a wanted path:
    a few hundred labelled windows of a million-frame output touch a few of its row groups."""
    wanted = pa.array(sorted(set(paths)), pa.string())
    parts: dict[str, list] = {}
    for uri in out.frame_files:
        with out.fs.open(out.fs_path(uri), "rb") as f:
            pf = schema.parquet_file(f)
            for g in range(pf.num_row_groups):
                if not pc.any(
                    pc.is_in(pf.read_row_group(g, columns=["path"]).column("path"), value_set=wanted)
                ).as_py():
                    continue
                batch = pf.read_row_group(g, columns=["path", "frame", "start_s", "embedding"])
                batch = batch.filter(pc.is_in(batch.column("path"), value_set=wanted))
                emb = list_matrix(batch.column("embedding")).astype(np.float32)
                frame, start = batch.column("frame").to_numpy(), batch.column("start_s").to_numpy()
                bpaths = np.asarray(batch.column("path").to_pylist(), dtype=object)
                for p in np.unique(bpaths):
                    m = bpaths == p
                    parts.setdefault(p, []).append((frame[m], start[m], emb[m]))
    result = {}
    for p, chunks in parts.items():
        order = np.argsort(np.concatenate([c[0] for c in chunks]), kind="stable")
        start = np.concatenate([c[1] for c in chunks])[order]
        result[p] = (start, start + framing.WINDOW_SECONDS, np.concatenate([c[2] for c in chunks])[order])
    return result


def load_windows(out: Output, labels: str, min_files: int = 1, frame_source=None):
    """The labelled windows joined with the output's frames, as a LabelledSet whose items are windows.

    A class may come from one file (negatives often do: one noisy recording); cross-validation then
    holds all of it out at once and says so, and the final head is fit on every window. ``frame_source``
    (``paths -> {path: (start_s, end_s, embeddings)}``, as :func:`frame_table`) serves frames already in
    memory (the explorer's)."""
    from yamnet_beam.customize.train import LabelledSet

    windows = read_windows(labels)
    problems: list[str] = []
    uncertain = [w for w in windows if w.cls is None]
    if uncertain:
        problems.append(f"{len(uncertain)} uncertain window(s): kept for review, not trained on")
    status = {}
    if out.file_files:
        from yamnet_beam.table.output import scan_parquet

        for b in scan_parquet(out.fs, out.file_files, ["path", "status"]):
            status.update(zip(b.column("path").to_pylist(), b.column("status").to_pylist(), strict=True))
    frames = (frame_source or (lambda paths: frame_table(out, paths)))([w.path for w in windows if w.cls is not None])
    items: list[tuple[Window, np.ndarray]] = []
    for w in windows:
        if w.cls is None:
            continue
        if w.path not in frames:
            why = "its files/ row is an error" if status.get(w.path) not in (None, schema.STATUS_OK) else "no frames"
            problems.append(f"{w.path} {w.start_s:g}-{w.end_s:g} s: skipped, {why} in {out.uri}")
            continue
        start, end, emb = frames[w.path]
        idx = covering_frames(start, end, w.start_s, w.end_s)
        if not len(idx):
            problems.append(f"{w.path} {w.start_s:g}-{w.end_s:g} s: skipped, no frame covers it")
            continue
        items.append((w, emb[idx]))
    files_of: dict[str, set[str]] = {}
    for w, _ in items:
        files_of.setdefault(w.cls, set()).add(w.path)
    too_few = sorted(c for c, f in files_of.items() if len(f) < min_files)
    for c in too_few:
        problems.append(
            f"class {c!r}: dropped, windows in {len(files_of[c])} file(s), cross-validation needs {min_files}"
        )
    classes = sorted(c for c in files_of if c not in too_few)
    items = [(w, e) for w, e in items if w.cls in classes]
    if len(classes) < 2:
        raise TrainError(
            f"need at least 2 classes with windows in {min_files} or more file(s) each, found {len(classes)} "
            f"({', '.join(classes) or 'none'}): label more windows (negatives train 'not <class>')"
        )
    folds = [w.fold for w, _ in items]
    return LabelledSet(
        classes=classes,
        paths=[w.path for w, _ in items],
        targets=np.array([[w.cls == c for c in classes] for w, _ in items], dtype=np.int8),
        folds=folds if all(folds) else None,
        embeddings=[e for _, e in items],
        multilabel=False,
        problems=problems,
        windows=[(w.start_s, w.end_s) for w, _ in items],
    )


def group_folds(targets: np.ndarray, paths: list[str], folds: int, seed: int) -> np.ndarray:
    """The held-out fold of each window: stratified K-fold over files (a file's windows share a fold)."""
    files = sorted(set(paths))
    n_splits = min(folds, len(files))
    if n_splits < 2:
        raise TrainError("the labelled windows come from one file: cross-validation by file needs 2 or more")
    ms = sklearn_module("model_selection")
    splitter = ms.StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    out = np.zeros(len(paths), dtype=np.int64)
    for i, (_, test) in enumerate(splitter.split(np.zeros(len(paths)), targets.argmax(axis=1), groups=paths)):
        out[test] = i
    return out
