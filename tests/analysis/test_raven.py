"""Raven Pro selection tables: parsed back as tab-separated text, their times and classes equal ``query events``."""

from __future__ import annotations

import csv

import pytest

from yamnet_beam.analysis import query
from yamnet_beam.analysis.raven import COLUMNS, SUFFIX, raven_text, table_name
from yamnet_beam.cli import main


def _parse(path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _expected(out):
    ev = query.events(out, "Sine wave", 0.1)
    assert len(set(ev["path"].to_pylist())) >= 2, "the tone and the sweep: events in two files"
    return ev.to_pylist()


def test_one_table_for_all_round_trips(out, scene, tmp_path):
    dest = tmp_path / "speech.selections.txt"
    args = ["query", scene["out"], "events", "--class", "Sine wave", "--threshold", "0.1", "--format", "raven"]
    assert main([*args, "-o", str(dest)]) == 0
    lines = dest.read_text().splitlines()
    assert lines[0].split("\t")[: len(COLUMNS)] == list(COLUMNS)
    rows, expected = _parse(dest), _expected(out)
    assert [int(r["Selection"]) for r in rows] == list(range(1, len(expected) + 1))
    assert {(r["View"], r["Channel"], r["Low Freq (Hz)"], r["High Freq (Hz)"]) for r in rows} == {
        ("Spectrogram 1", "1", "0.0", "8000.0")
    }
    for r, e in zip(rows, expected, strict=True):
        assert r["Begin Path"] == e["path"] and r["Class"] == e["class"] == "Sine wave"
        assert float(r["Begin Time (s)"]) == pytest.approx(e["start_s"], abs=1e-6)
        assert float(r["End Time (s)"]) == pytest.approx(e["end_s"], abs=1e-6)
        assert float(r["Score"]) == pytest.approx(e["peak_score"], abs=1e-6)


def test_one_table_per_file_round_trips(out, scene, tmp_path):
    dest = tmp_path / "tables"
    args = ["query", scene["out"], "events", "--class", "Sine wave", "--threshold", "0.1", "--format", "raven"]
    assert main([*args, "--per_file", "-o", str(dest)]) == 0
    expected = _expected(out)
    by_path: dict[str, list] = {}
    for e in expected:
        by_path.setdefault(e["path"], []).append(e)
    assert sorted(p.name for p in dest.iterdir()) == sorted(table_name(p) for p in by_path)
    for path, evs in by_path.items():
        rows = _parse(dest / table_name(path))
        assert "Begin Path" not in rows[0]
        got = [(float(r["Begin Time (s)"]), float(r["End Time (s)"]), r["Class"]) for r in rows]
        assert got == [(pytest.approx(e["start_s"], abs=1e-6), pytest.approx(e["end_s"], abs=1e-6), e["class"])
                       for e in evs]  # fmt: skip


def test_hostile_names_keep_the_table_tabular():
    import pyarrow as pa

    t = pa.table({"path": ["a\tb\nc.wav"], "class": ["x\ty"], "start_s": [1.0], "end_s": [2.0], "peak_score": [0.5]})
    lines = raven_text(t).splitlines()
    assert len(lines) == 2 and len(lines[1].split("\t")) == len(lines[0].split("\t"))
    assert table_name("dir/dog bark.flac") == f"dog bark{SUFFIX}"


def test_per_file_needs_raven_and_a_directory(scene, capsys):
    base = ["query", scene["out"], "events", "--class", "Speech"]
    assert main([*base, "--per_file", "-o", "x"]) == 2
    assert main([*base, "--format", "raven", "--per_file"]) == 2
    assert "--per_file" in capsys.readouterr().err
