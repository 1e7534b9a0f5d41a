"""The labels store: append-only JSON lines, a torn last line skipped, the latest label of a window counts."""

from __future__ import annotations

import csv
import io
import json

import pytest

from yamnet_beam.table.labels import FIELDS, LabelError, LabelStore, WindowLabel, latest, read_labels, to_csv


def _lab(path="a.wav", start=0.0, label="positive", cls="dog", t=1.0):
    return WindowLabel(path, start, start + 0.975, cls, label, "class dog", t)


def test_append_reads_back_in_order_and_a_torn_line_is_skipped(tmp_path):
    store = LabelStore(str(tmp_path))
    store.append([_lab(start=0.0), _lab(start=0.48, label="negative")])
    store.append([_lab(path='we"ird\n<b>.wav', start=1.0, label="uncertain")])
    with open(store.file, "a") as f:
        f.write('{"path": "b.wav", "start_s": 0.0, "end_')  # a crash mid-line
    got = read_labels(store.dir)
    assert [(g.path, g.start_s, g.label) for g in got] == [
        ("a.wav", 0.0, "positive"),
        ("a.wav", 0.48, "negative"),
        ('we"ird\n<b>.wav', 1.0, "uncertain"),
    ]
    lines = open(store.file).read().splitlines()
    assert set(json.loads(lines[0])) == set(FIELDS)


def test_latest_keeps_the_last_label_of_each_window_and_class():
    labs = [_lab(t=1), _lab(label="negative", t=2), _lab(cls="cat", t=3), _lab(start=2.0, t=4)]
    assert [(x.cls, x.start_s, x.label) for x in latest(labs)] == [
        ("dog", 0.0, "negative"),
        ("cat", 0.0, "positive"),
        ("dog", 2.0, "positive"),
    ]


def test_csv_export_parses_back():
    labs = [_lab(path="x, y.wav"), _lab(label="uncertain")]
    rows = list(csv.DictReader(io.StringIO(to_csv(labs))))
    assert [r["path"] for r in rows] == ["x, y.wav", "a.wav"]
    assert [float(r["end_s"]) for r in rows] == [0.975, 0.975] and rows[1]["label"] == "uncertain"


@pytest.mark.parametrize(
    "bad",
    [_lab(label="maybe"), _lab(cls=" "), WindowLabel("a.wav", 1.0, 1.0, "dog", "positive"), _lab(path="")],
)
def test_bad_labels_are_refused_and_nothing_is_written(tmp_path, bad):
    store = LabelStore(str(tmp_path))
    with pytest.raises(LabelError):
        store.append([_lab(), bad])
    assert read_labels(store.dir) == []
