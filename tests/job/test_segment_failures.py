"""A failure inside one segment of a split long file: the file gets one error row, its frames are counted
exactly, nothing is lost or doubled, and resume redoes it only when the kind is transient.

Runs the whole job (``run`` with ``--shard_seconds``) with a fake model, so it is about the plumbing.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.support.fakes import FailingOnCallLoader, FakeModelLoader
from yamnet_beam.job.pipeline import run

SR = 44100


@pytest.fixture(scope="module")
def long_flac(tmp_path_factory):
    d = tmp_path_factory.mktemp("seg_fail")
    rng = np.random.default_rng(5)
    x = (0.1 * rng.standard_normal((int(40 * SR), 2))).astype(np.float32)
    path = d / "whole" / "long.flac"
    path.parent.mkdir()
    with sf.SoundFile(path, "w", SR, 2, format="FLAC") as f:
        for i in range(0, len(x), SR * 5):
            f.write(x[i : i + SR * 5])
    return path


def _run(inputs, out, model_path, loader, *extra):
    argv = ["--input", str(inputs), "--output", str(out), "--model", str(model_path), "--shard_seconds", "10"]
    return run([*argv, "--fail_threshold", "1", *extra], model_loader=loader)


def _tables(out):
    files = pq.read_table(out / "files").to_pylist()
    frames = pq.read_table(out / "frames", columns=["path", "frame"]).to_pylist() if (out / "frames").exists() else []
    return files, frames


def _check_counts(out, path):
    files, frames = _tables(out)
    [row] = [r for r in files if r["path"] == str(path)]
    numbers = sorted(f["frame"] for f in frames if f["path"] == str(path))
    assert len(numbers) == len(set(numbers)) == row["frames"]  # counted exactly, none doubled
    assert len([p for p in (out / "frames").glob("part-*-s*.parquet")]) >= 1
    return row, numbers


def test_truncated_flac_fails_in_a_later_segment(long_flac, tmp_path, model_path):
    cut = tmp_path / "in" / "long.flac"
    cut.parent.mkdir()
    data = long_flac.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.55)])  # the header still says 40 s
    out = tmp_path / "out"
    s = _run(cut.parent, out, model_path, FakeModelLoader())
    row, numbers = _check_counts(out, cut)
    assert row["status"] == "error" and row["error_kind"] == "corrupt", row
    assert "decode failed after" in row["error"] or "before the length its header gives" in row["error"], row
    assert 0 < row["frames"] < 1 + -(-(40 * 16000 - 15600) // 7680)
    assert numbers == list(range(row["frames"]))  # the segments before the damage are kept, in order
    assert s.files_error == 1
    # Not transient: a resume leaves it as it is.
    assert _run(cut.parent, out, model_path, FakeModelLoader(), "--mode", "resume").files_processed == 0


def test_a_model_error_in_one_segment_fails_the_file_and_resume_redoes_it(long_flac, tmp_path, model_path):
    out = tmp_path / "out"
    s = _run(long_flac.parent, out, model_path, FailingOnCallLoader(fail_at=3))
    row, _ = _check_counts(out, long_flac)
    assert row["status"] == "error" and row["error_kind"] == "internal", row
    assert "interpreter crashed" in row["error"]
    assert s.files_error == 1
    # internal is transient: the resumed run redoes the file, replacing its rows and every segment's frames.
    s = _run(long_flac.parent, out, model_path, FakeModelLoader(), "--mode", "resume")
    assert s.files_processed == 1 and s.files_ok == 1
    row, numbers = _check_counts(out, long_flac)
    assert row["status"] == "ok" and numbers == list(range(1 + -(-(40 * 16000 - 15600) // 7680)))
    files, _ = _tables(out)
    assert [r["path"] for r in files] == [str(long_flac)]  # one row, the old one dropped
