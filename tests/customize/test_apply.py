"""apply: scoring a finished output's stored embeddings gives exactly what run --head wrote."""

from __future__ import annotations

import pyarrow.parquet as pq

from yamnet_beam.cli import main
from yamnet_beam.table import schema
from yamnet_beam.table.lease import Lease
from yamnet_beam.table.output import OutputDir

COLS = ["path", "frame", "start_s", "end_s", "head_scores", "head_top_label", "head_top_score", "head_labels"]


def test_apply_equals_run_head(plain_out, head_out, head_dir, head):
    assert main(["apply", str(plain_out), "--head", str(head_dir)]) == 0
    applied = pq.read_table(plain_out / "heads" / head.name)
    assert applied.schema.remove_metadata().equals(schema.heads_schema(head.num_classes))
    assert schema.read_metadata(applied.schema)["head_sha256"] == head.sha256
    keys = [("path", "ascending"), ("frame", "ascending")]
    ran = pq.read_table(head_out / "frames", columns=COLS).sort_by(keys)
    got = applied.select(COLS).sort_by(keys)
    assert got.num_rows == ran.num_rows > 100
    for c in COLS:
        assert got.column(c).to_pylist() == ran.column(c).to_pylist(), c


def test_apply_into_an_output_a_live_job_holds_exits_2_writing_nothing(bare_out, head_dir, capsys):
    holder = Lease(OutputDir(str(bare_out)), "run")
    holder.acquire(take_over_stale=False)
    before = sorted(p.relative_to(bare_out) for p in bare_out.rglob("*"))
    assert main(["apply", str(bare_out), "--head", str(head_dir)]) == 2
    err = capsys.readouterr().err
    assert f"pid {holder.holder.pid}" in err and f"started {holder.holder.started}" in err
    assert sorted(p.relative_to(bare_out) for p in bare_out.rglob("*")) == before  # no heads/ begun
    holder.release()
    assert main(["apply", str(bare_out), "--head", str(head_dir)]) == 0  # free again: applies
    assert not (bare_out / "_lease.json").exists()
