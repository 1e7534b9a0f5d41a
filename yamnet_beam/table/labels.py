"""People's window labels, kept beside an output: ``OUTPUT/labels/labels-<session>.jsonl``, append-only.

Each label is one JSON line (path, start_s, end_s, class, label, query, time) written and fsync'd before the
call returns, so a crash loses at most the line being written; a torn last line is skipped when reading.
A window's latest label for a class is the one that counts (:func:`latest`); the files keep every click.
Plain files only (the explorer runs beside a local output).
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from yamnet_beam.errors import UserError
from yamnet_beam.table.layout import LABELS_DIR

LABEL_VALUES = ("positive", "negative", "uncertain")
FIELDS = ("path", "start_s", "end_s", "class", "label", "query", "time")
NEGATIVE_PREFIX = "not "  # a negative for class C trains the class "not C"


class LabelError(UserError, ValueError):
    """A label that cannot be stored or read as given; the message says what to fix."""


@dataclass(frozen=True)
class WindowLabel:
    """One judgement of one time window of one file for one class."""

    path: str
    start_s: float
    end_s: float
    cls: str
    label: str  # positive | negative | uncertain
    query: str = ""
    time: float = 0.0

    def row(self) -> dict:
        d = asdict(self)
        d["class"] = d.pop("cls")
        return {k: d[k] for k in FIELDS}

    def key(self) -> tuple[str, float, float, str]:
        return (self.path, round(self.start_s, 6), round(self.end_s, 6), self.cls)


def check(label: WindowLabel) -> WindowLabel:
    if label.label not in LABEL_VALUES:
        raise LabelError(f"label must be one of {', '.join(LABEL_VALUES)}, got {label.label!r}")
    if not label.path or not label.cls.strip():
        raise LabelError("a label needs a path and a class")
    if not (0 <= label.start_s < label.end_s):
        raise LabelError(f"a window needs 0 <= start_s < end_s, got {label.start_s}..{label.end_s}")
    return label


def labels_dir(output_path: str) -> str:
    return os.path.join(output_path, LABELS_DIR)


class LabelStore:
    """Appends labels to this session's file under ``OUTPUT/labels/``; thread-safe."""

    def __init__(self, output_path: str, session: str | None = None):
        self.dir = labels_dir(output_path)
        self.file = os.path.join(self.dir, f"labels-{session or time.strftime('%Y%m%dT%H%M%S')}-"
                                 f"{secrets.token_hex(3)}.jsonl")  # fmt: skip
        self._lock = threading.Lock()

    def append(self, labels: Iterable[WindowLabel]) -> int:
        lines = [json.dumps(check(lab).row(), sort_keys=True, ensure_ascii=False) + "\n" for lab in labels]
        with self._lock:
            os.makedirs(self.dir, exist_ok=True)
            fd = os.open(self.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, "".join(lines).encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        return len(lines)


def _parse(line: str) -> WindowLabel | None:
    try:
        d = json.loads(line)
        return WindowLabel(
            str(d["path"]), float(d["start_s"]), float(d["end_s"]), str(d["class"]), str(d["label"]),
            str(d.get("query") or ""), float(d.get("time") or 0.0),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None


def read_labels(path: str) -> list[WindowLabel]:
    """Every label in a ``.jsonl`` file or a labels directory (its files in name order), in writing order.

    A line that does not parse (the torn last line of a crash) is skipped."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".jsonl"))
    elif os.path.isfile(path):
        files = [path]
    else:
        return []
    out = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                lab = _parse(line) if line.strip() else None
                if lab is not None and lab.label in LABEL_VALUES:
                    out.append(lab)
    return out


def latest(labels: Iterable[WindowLabel]) -> list[WindowLabel]:
    """The last label of each (window, class), in the order of those last labels."""
    last: dict[tuple, WindowLabel] = {}
    for lab in labels:
        last.pop(lab.key(), None)
        last[lab.key()] = lab
    return list(last.values())


def to_csv(labels: Iterable[WindowLabel]) -> str:
    """CSV with a header of :data:`FIELDS`: what ``train --labels`` reads back."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    for lab in labels:
        w.writerow(lab.row())
    return buf.getvalue()


def training_class(label: WindowLabel) -> str | None:
    """The class a label trains: C for positive, "not C" for negative, None (kept for review) for uncertain."""
    if label.label == "positive":
        return label.cls
    if label.label == "negative":
        return NEGATIVE_PREFIX + label.cls
    return None
