"""apply: scoring a finished output's stored embeddings gives exactly what run --head wrote."""

from __future__ import annotations

import pyarrow.parquet as pq

from yamnet_beam.cli import main
from yamnet_beam.job import schema

COLS = ["path", "frame", "start_s", "end_s", "head_scores", "head_top_label", "head_top_score", "head_labels"]


def test_apply_equals_run_head(plain_out, head_out, head_dir, head):
    assert main(["apply", str(plain_out), "--head", str(head_dir), "--mode", "overwrite"]) == 0
    applied = pq.read_table(plain_out / "heads" / head.name)
    assert applied.schema.remove_metadata().equals(schema.heads_schema(head.num_classes))
    assert schema.read_metadata(applied.schema)["head_sha256"] == head.sha256
    keys = [("path", "ascending"), ("frame", "ascending")]
    ran = pq.read_table(head_out / "frames", columns=COLS).sort_by(keys)
    got = applied.select(COLS).sort_by(keys)
    assert got.num_rows == ran.num_rows > 100
    for c in COLS:
        assert got.column(c).to_pylist() == ran.column(c).to_pylist(), c


def test_apply_again_needs_mode_overwrite(plain_out, head_dir, head, capsys):
    """The overwrite rule of every command that writes: an existing heads/<name>/ is replaced only when asked."""
    assert main(["apply", str(plain_out), "--head", str(head_dir), "--mode", "overwrite"]) == 0
    dest = plain_out / "heads" / head.name
    before = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    capsys.readouterr()
    assert main(["apply", str(plain_out), "--head", str(head_dir)]) == 2
    assert capsys.readouterr().err == (
        f"yamnet-beam: error: {plain_out}/heads/{head.name} already exists; pass --mode overwrite to replace it\n"
    )
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == before
