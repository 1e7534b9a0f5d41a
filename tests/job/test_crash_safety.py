"""Crash safety by fault injection: the job killed (or failing) at every step of a part's commit.

Each case runs the job through ``faulty://`` (:mod:`tests.support.faultfs`) with a fault planted on
one step: the N-th write into a temporary frames file, its rename into ``frames/``, the temporary
files part, the rename of the commit marker into ``files/``, a segment's frames rename, the cleanup's
``rm``. Small ``--row_group_rows`` and ``--frames_per_batch`` make every part stream through ``_tmp/``
before its commit, so the faults land while uncommitted files exist. Then, read straight from the
Parquet files (not through the package):

- at every rename of the run, and after the fault, readers see only whole parts: each committed
  marker's rows with all of their frames, equal to an uninterrupted run's; nothing else;
- the cleanup (:meth:`OutputDir.remove_uncommitted`) leaves exactly that, and no ``_tmp/`` file;
- ``--mode resume`` then ends with the rows of one uninterrupted run, bit for bit.

The per-output lease does not exist yet, so no fault is planted on it here.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.support.faultfs import Fault, Killed, faulty_filesystem, url
from yamnet_beam.job.pipeline import run
from yamnet_beam.table.output import OutputDir

SR = 16000
TIMING = {"decode_ms", "infer_ms", "part"}  # files columns that differ between runs of the same inputs
# Small row groups and batches: every part streams into _tmp/ in several writes before its commit.
OPTS = ["--part_files", "1", "--row_group_rows", "2", "--frames_per_batch", "2", "--shard_seconds", "4"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Four short clips (6 frames each), one 10 s clip split into segments, one broken file."""
    d = tmp_path_factory.mktemp("crash_audio")
    rng = np.random.default_rng(3)
    t = np.arange(3 * SR) / SR
    for i in range(4):
        x = 0.2 * np.sin(2 * np.pi * (300 + 100 * i) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(d / f"clip_{i}.wav", x.astype(np.float32), SR)
    long = 0.1 * rng.standard_normal(10 * SR)
    sf.write(d / "long.wav", long.astype(np.float32), SR)
    (d / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt ")
    return d


def _argv(corpus, out, model_args, *extra):
    return ["--input", str(corpus), "--output", str(out), *model_args, *OPTS, *extra]


def _read_dir(d: Path) -> list[Path]:
    return sorted(d.glob("part-*.parquet")) if d.is_dir() else []


def visible(out: Path) -> tuple[list[dict], pa.Table]:
    """What a reader may use: the files rows of every marker, and the frames parts those markers commit.

    A frames part ``part-<id>.parquet`` or ``part-<id>-s<n>.parquet`` is committed by ``files/part-<id>.parquet``.
    """
    markers = {p.name.removeprefix("part-").removesuffix(".parquet"): p for p in _read_dir(out / "files")}
    files = [r for p in markers.values() for r in pq.read_table(p).to_pylist()]
    frames = [
        pq.read_table(p) for p in _read_dir(out / "frames") if p.name[5:-8].split("-s")[0] in markers
    ]  # a frames part's id, up to its segment mark
    table = pa.concat_tables(frames) if frames else None
    return files, table


def _rows(files: list[dict]) -> dict[str, dict]:
    return {r["path"]: {k: v for k, v in r.items() if k not in TIMING} for r in files}


def _frames_by_path(frames: pa.Table | None) -> dict[str, pa.Table]:
    if frames is None:
        return {}
    frames = frames.sort_by([("path", "ascending"), ("frame", "ascending")])
    paths = frames.column("path").to_pylist()
    out, start = {}, 0
    for i in range(1, len(paths) + 1):
        if i == len(paths) or paths[i] != paths[start]:
            out[paths[start]] = frames.slice(start, i - start)
            start = i
    return out


def assert_whole_parts(out: Path, ref: tuple[dict, dict]) -> set[str]:
    """Readers see only whole parts equal to the reference run's; returns the visible paths."""
    ref_rows, ref_frames = ref
    files, frames = visible(out)
    rows = _rows(files)
    assert len(rows) == len(files), "a path committed twice"
    by_path = _frames_by_path(frames)
    assert set(by_path) <= set(rows), f"frames visible without their files row: {set(by_path) - set(rows)}"
    for path, row in rows.items():
        assert row == ref_rows[path]
        if row["status"] == "ok":
            assert path in by_path, f"{path} committed without its frames"
            assert by_path[path].equals(ref_frames[path]), f"{path}: frames differ from an uninterrupted run"
    return set(rows)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory, model_args):
    """One uninterrupted run, read back as rows per path and frames per path."""
    out = tmp_path_factory.mktemp("crash_ref") / "out"
    run(_argv(corpus, out, model_args))
    files, frames = visible(out)
    assert len(files) == 6 and sum(r["status"] == "ok" for r in files) == 5
    return _rows(files), _frames_by_path(frames)


def _assert_same_as_reference(out: Path, ref) -> None:
    assert assert_whole_parts(out, ref) == set(ref[0])  # every input, whole, once
    full = pq.read_table(out / "frames").num_rows  # every file on disk, committed or not
    assert full == sum(t.num_rows for t in ref[1].values())


def _faulted_run(corpus, out, model_args, fault: Fault, ref):
    """Runs the job through faulty:// with ``fault``; checks every rename as it happens. Returns the fault state."""

    def after_mv(src: str, dest: str) -> None:
        assert_whole_parts(out, ref)

    with faulty_filesystem(fault, after_mv=after_mv) as state:
        with pytest.raises(Exception) as e:  # noqa: B017 - Beam wraps the injected error in its own
            run(_argv(corpus, url(out), model_args))
        assert state.fired is not None, f"the fault {fault} never fired (ops: {state.log})"
        words = ("killed at", "dead since") if fault.action == "kill" else ("injected failure",)
        assert any(w in str(e.value) for w in words), e.value
    return state


KILLS = [
    pytest.param(Fault("write", 3, "*/_tmp/frames-*"), id="mid-stream-write-of-a-temp-frames-file"),
    pytest.param(Fault("mv", 1, "*/frames/part-*"), id="first-frames-rename"),
    pytest.param(Fault("mv", 3, "*/frames/part-*"), id="third-frames-rename"),
    pytest.param(Fault("open", 2, "*/_tmp/files-*"), id="temp-files-part"),
    pytest.param(Fault("mv", 1, "*/files/part-*"), id="first-marker-rename"),
    pytest.param(Fault("mv", 3, "*/files/part-*"), id="third-marker-rename"),
    pytest.param(Fault("mv", 2, "*/frames/part-*-s0000*"), id="second-segment-rename"),
    pytest.param(Fault("mv", 3, "*/files/part-*", action="fail"), id="failed-marker-rename"),
    pytest.param(Fault("write", 2, "*/_tmp/frames-*", action="fail"), id="failed-write-then-abort"),
]


@pytest.mark.parametrize("fault", KILLS)
def test_fault_at_each_commit_step_then_cleanup_then_resume(corpus, tmp_path, model_args, reference, fault):
    out = tmp_path / "out"
    state = _faulted_run(corpus, out, model_args, fault, reference)
    before = assert_whole_parts(out, reference)  # after the fault: whole parts only
    assert len(before) < 6, "the fault interrupted nothing"
    if fault.action == "kill":  # something uncommitted is left behind for the cleanup to find
        leftovers = list((out / "_tmp").glob("*.parquet")) + [
            p
            for p in _read_dir(out / "frames")
            if not (out / "files" / f"part-{p.name[5:-8].split('-s')[0]}.parquet").exists()
        ]
        assert leftovers or fnmatch.fnmatch(state.fired[1], "*/_tmp/files-*"), state.fired
    removed = OutputDir(str(out)).remove_uncommitted()
    assert assert_whole_parts(out, reference) == before  # the cleanup removed nothing committed
    assert not list((out / "_tmp").glob("*")) if (out / "_tmp").exists() else True
    on_disk = pq.read_table(out / "frames").num_rows if _read_dir(out / "frames") else 0
    visible_frames = visible(out)[1]
    assert on_disk == (visible_frames.num_rows if visible_frames is not None else 0), removed  # no orphan frames
    s = run(_argv(corpus, out, model_args, "--mode", "resume"))
    assert s.files_processed == 6 - len(before)
    _assert_same_as_reference(out, reference)


def test_resume_cleans_up_after_a_kill_by_itself(corpus, tmp_path, model_args, reference):
    """No manual cleanup: the resumed run removes the killed run's leftovers (temp files, orphan frames)."""
    out = tmp_path / "out"
    _faulted_run(corpus, out, model_args, Fault("mv", 2, "*/files/part-*"), reference)
    orphans = [p.name for p in _read_dir(out / "frames") if not (out / "files" / p.name).exists()]
    temps = list((out / "_tmp").glob("*.parquet"))
    assert orphans or temps
    run(_argv(corpus, out, model_args, "--mode", "resume"))
    _assert_same_as_reference(out, reference)
    assert not (out / "_tmp").exists() or not list((out / "_tmp").iterdir())


def test_kill_during_cleanup_then_resume(corpus, tmp_path, model_args, reference):
    """Killed again while the resumed run removes the first run's leftovers: the next resume still ends whole."""
    out = tmp_path / "out"
    _faulted_run(corpus, out, model_args, Fault("mv", 2, "*/files/part-*"), reference)
    before = assert_whole_parts(out, reference)
    with faulty_filesystem(Fault("rm", 1, "*/_tmp")) as state:
        with pytest.raises(Killed):
            run(_argv(corpus, url(out), model_args, "--mode", "resume"))
        assert state.fired is not None
    assert assert_whole_parts(out, reference) == before
    run(_argv(corpus, out, model_args, "--mode", "resume"))
    _assert_same_as_reference(out, reference)


def test_frames_are_renamed_before_their_marker(corpus, tmp_path, model_args, reference):
    """The commit order itself, from the log of an uninterrupted run: frames (and segments) first, marker last."""
    out = tmp_path / "out"
    with faulty_filesystem(after_mv=lambda src, dest: assert_whole_parts(out, reference)) as state:
        run(_argv(corpus, url(out), model_args))
    renames = [p.rsplit("/", 2)[1:] for op, p in state.log if op == "mv"]  # [directory, name]
    markers = {name: i for i, (d, name) in enumerate(renames) if d == "files"}
    assert len(markers) == 6
    with_frames = 0
    for name, i in markers.items():
        pid = name.removesuffix(".parquet")
        frames = [j for j, (d, n) in enumerate(renames) if d == "frames" and n[5:-8].split("-s")[0] == pid[5:]]
        assert all(j < i for j in frames), f"{name}: the marker was renamed before its frames ({renames})"
        with_frames += bool(frames)
    assert with_frames == 5  # every ok file's part (the broken file's part has no frames)
    _assert_same_as_reference(out, reference)
