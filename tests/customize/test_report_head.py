"""report --head: the page holds the head's classes, its cross-validated metrics and each file's top custom class,
the numbers equal to head.json / metrics.json and to mean head scores computed here from the Parquet."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pyarrow.parquet as pq

from yamnet_beam.cli import main


def _section_tables(page: str) -> list[list[list[str]]]:
    """The tables of the report's head section, as rows of unescaped cell texts (header row first)."""
    section = re.search(r'<section id="head">(.*?)</section>', page, re.S).group(1)
    return [
        [
            [html.unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", t)
        ]
        for t in re.findall(r"<table>(.*?)</table>", section, re.S)
    ]


def _mean_head_scores(parts_dir) -> dict[str, np.ndarray]:
    t = pq.read_table(parts_dir, columns=["path", "head_scores"])
    paths = np.asarray(t.column("path").to_pylist())
    s = np.stack(t.column("head_scores").to_numpy(zero_copy_only=False)).astype(np.float64)
    return {p: s[paths == p].mean(axis=0) for p in np.unique(paths)}


def _check_page(page: str, head_dir, means: dict[str, np.ndarray]) -> None:
    doc = json.loads((head_dir / "head.json").read_text())
    metrics = json.loads((head_dir / "metrics.json").read_text())["clip"]
    summary, classes, tops = _section_tables(page)
    assert dict(summary[1:])["accuracy"] == f"{metrics['accuracy']:.3f}"
    assert dict(summary[1:])["macro_f1"] == f"{metrics['macro_f1']:.3f}"
    assert classes[0] == ["class", "threshold", "precision", "recall", "f1", "support"]
    assert [r[0] for r in classes[1:]] == doc["classes"]
    for row, c, t in zip(classes[1:], doc["classes"], doc["thresholds"], strict=True):
        pc = metrics["per_class"][c]
        assert row[1:] == [
            f"{t:.3f}",
            f"{pc['precision']:.3f}",
            f"{pc['recall']:.3f}",
            f"{pc['f1']:.3f}",
            str(pc["support"]),
        ]
    header, rows = tops[0], tops[1:]
    assert header == ["path", "rank", "by_mean", "mean", "threshold", "by_max", "max"]
    firsts = {r[0]: r for r in rows if r[1] == "1"}
    assert sorted(firsts) == sorted(means)
    for path, m in means.items():
        k = int(m.argmax())
        row = firsts[path]
        assert row[2] == doc["classes"][k] and row[3] == f"{m[k]:.3f}", path
        assert row[4] == f"{doc['thresholds'][k]:.3f}"


def test_report_of_a_run_head_output(head_out, head_dir, tmp_path):
    dest = tmp_path / "report.html"
    assert main(["report", str(head_out), "-o", str(dest), "--sample", "1", "--head", str(head_dir), "--no_audio"]) == 0
    page = dest.read_text(encoding="utf-8")
    assert "frames/ (run --head)" in page
    _check_page(page, head_dir, _mean_head_scores(head_out / "frames"))


def test_report_of_an_applied_head(plain_out, head_dir, head, tmp_path):
    assert main(["apply", str(plain_out), "--head", str(head_dir), "--mode", "overwrite"]) == 0
    dest = tmp_path / "report.html"
    assert main(["report", str(plain_out), "-o", str(dest), "--sample", "0", "--head", str(head_dir)]) == 0
    page = dest.read_text(encoding="utf-8")
    assert f"heads/{head.name}/ (yamnet-beam apply)" in page
    _check_page(page, head_dir, _mean_head_scores(plain_out / "heads" / head.name))


def test_report_without_the_heads_scores_says_what_to_do(bare_out, head_dir, tmp_path, capsys):
    capsys.readouterr()
    assert main(["report", str(bare_out), "-o", str(tmp_path / "r.html"), "--head", str(head_dir)]) == 2
    assert "yamnet-beam apply" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
