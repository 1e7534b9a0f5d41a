"""apply: scoring a finished output's stored embeddings gives exactly what run --head wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from tests.customize.conftest import HOP
from tests.support.helpers import interrupt_cli
from yamnet_beam.cli import main
from yamnet_beam.job.pipeline import run
from yamnet_beam.table import schema
from yamnet_beam.table.lease import Lease
from yamnet_beam.table.output import OutputDir

REPO = Path(__file__).resolve().parents[2]
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


def test_ctrl_c_during_apply_says_what_was_scored_and_leaves_no_temporary_part(tmp_path, head_dir, head, model_args):
    """Ctrl-C: exit 130 and one line; the parts being written are removed; --mode overwrite then scores all."""
    audio = tmp_path / "audio"
    audio.mkdir()
    t = np.arange(16000) / 16000
    for i in range(150):
        sf.write(audio / f"t{i:03d}.wav", (0.1 * np.sin(2 * np.pi * (300 + 5 * i) * t)).astype(np.float32), 16000)
    out = tmp_path / "out"
    run(["--input", str(audio), "--output", str(out), "--hop_s", HOP, "--part_files", "1", *model_args])
    dest = out / "heads" / head.name
    code, err = interrupt_cli(["apply", str(out), "--head", str(head_dir)], dest)
    assert code == 130, err
    scored = len(list(dest.glob("part-*.parquet")))
    assert err == (
        f"yamnet-beam: interrupted; {scored} of 150 parts scored in {dest}; run the same command with "
        "--mode overwrite to score them all\n"
    )
    assert scored < 150 and not list(dest.glob("_tmp-*"))
    assert main(["apply", str(out), "--head", str(head_dir), "--mode", "overwrite"]) == 0
    assert len(list(dest.glob("part-*.parquet"))) == 150


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
