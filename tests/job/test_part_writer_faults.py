"""The part writer and the resume drop killed at every filesystem step, one step at a time (no Beam).

For each step N of a commit (or of a drop), the same work is killed at step N through ``faulty://``;
then a reader sees either the whole part or nothing of it, and the cleanup and a retry end exactly
where an uninterrupted run ends. The order of the renames is read from the filesystem's log.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support import outputs
from tests.support.faultfs import Fault, Killed, faulty_filesystem, url
from yamnet_beam.table import schema
from yamnet_beam.table.output import OutputDir
from yamnet_beam.table.parts import PartWriteError, PartWriter

PATHS = ["/a.wav", "/b.wav", "/c.wav"]


def _write_part(out: str, pid: str = "p1", paths=PATHS, frames_per_file: int = 3) -> PartWriter:
    w = PartWriter(out, pid, schema.frames_schema(), schema.files_schema(), row_group_rows=2)
    for p in paths:
        w.add(outputs.frames(p, frames_per_file))  # 3 rows each, 2 per row group: a temp file exists early
    w.commit([outputs.row(p, frames=frames_per_file, part=pid) for p in paths])
    return w


def _view(root: Path) -> tuple[list[str], list[str]]:
    """(files rows' paths, frames rows' paths) a reader sees: markers, and only the frames parts they commit."""
    markers = sorted((root / "files").glob("part-*.parquet")) if (root / "files").exists() else []
    ids = {m.name[5:-8] for m in markers}
    frames = [p for p in sorted((root / "frames").glob("part-*.parquet")) if p.name[5:-8].split("-s")[0] in ids]
    files_paths = sorted(r for m in markers for r in pq.read_table(m).column("path").to_pylist())
    frames_paths = sorted(r for p in frames for r in pq.read_table(p).column("path").to_pylist())
    return files_paths, frames_paths


WHOLE = (PATHS, sorted(p for p in PATHS for _ in range(3)))
NOTHING = ([], [])


def _ops_of_a_commit(tmp_path) -> list[tuple[str, str]]:
    with faulty_filesystem() as state:
        _write_part(url(tmp_path / "probe"))
    return list(state.log)


def test_commit_renames_frames_before_the_marker_and_writes_the_marker_before_renaming_it(tmp_path):
    log = _ops_of_a_commit(tmp_path)
    renames = [p.rsplit("/", 2)[1] for op, p in log if op == "mv"]
    assert renames == ["frames", "files"]
    i_frames_mv = next(i for i, (op, p) in enumerate(log) if op == "mv" and "/frames/" in p)
    i_files_mv = next(i for i, (op, p) in enumerate(log) if op == "mv" and "/files/" in p)
    frames_writes = [i for i, (op, p) in enumerate(log) if op == "write" and "/_tmp/frames-" in p]
    files_writes = [i for i, (op, p) in enumerate(log) if op == "write" and "/_tmp/files-" in p]
    assert frames_writes and max(frames_writes) < i_frames_mv < min(files_writes)
    assert max(files_writes) < i_files_mv == len(log) - 1  # the marker's rename is the very last step


def _rel(step: tuple[str, str], root: Path) -> tuple[str, str]:
    """A logged step with its path relative to ``root`` and without the temp files' random suffix."""
    op, path = step
    rel = path.removeprefix(f"{root}/")
    return op, rel.rsplit("-", 1)[0] if rel.startswith("_tmp/") else rel


def _kill_points(log: list[tuple[str, str]]) -> list[Fault]:
    """A kill before every step of ``log``: the n-th occurrence of its operation."""
    seen: dict[str, int] = {}
    faults = []
    for op, _ in log:
        seen[op] = seen.get(op, 0) + 1
        faults.append(Fault(op, seen[op]))
    return faults


def test_killed_at_every_step_of_a_commit_shows_all_or_nothing(tmp_path):
    log = _ops_of_a_commit(tmp_path)
    assert {op for op, _ in log} >= {"makedirs", "open", "write", "mv"}
    for i, fault in enumerate(_kill_points(log)):
        gc.collect()  # the last "killed" writer's objects are finalised now, not while the next fault is planted
        out = tmp_path / f"out{i}"
        with faulty_filesystem(fault) as state:
            with pytest.raises((Killed, PartWriteError)):  # a write's failure reaches the caller as PartWriteError
                _write_part(url(out))
            assert _rel(state.fired, out) == _rel(log[i], tmp_path / "probe"), fault
        assert _view(out) == NOTHING, fault  # the marker's rename is the last step: not committed
        removed = OutputDir(str(out)).remove_uncommitted()
        assert _view(out) == NOTHING and list(out.rglob("*.parquet")) == [], (fault, removed)
        _write_part(str(out))  # the retried part
        assert _view(out) == WHOLE, fault
        assert sorted(p.parent.name for p in out.rglob("*.parquet")) == ["files", "frames"], fault


def test_a_failed_write_poisons_the_writer(tmp_path):
    out = tmp_path / "out"
    with faulty_filesystem(Fault("write", 2, action="fail")):
        w = PartWriter(url(out), "p1", schema.frames_schema(), schema.files_schema(), row_group_rows=2)
        w.add(outputs.frames("/a.wav", 1))
        with pytest.raises(PartWriteError, match="injected failure"):
            w.add(outputs.frames("/a.wav", 2))
        with pytest.raises(PartWriteError, match="an earlier write failed"):  # the lost row group is never skipped
            w.add(outputs.frames("/b.wav", 2))
        with pytest.raises(PartWriteError):
            w.commit([outputs.row("/a.wav", frames=3, part="p1")])
        try:
            w.abort()
        except Exception:  # closing a writer whose stream failed may raise too; the temp file must still go
            pass
    assert _view(out) == NOTHING
    assert not list(out.rglob("*.parquet"))


def test_abort_removes_the_temp_file_and_commits_nothing(tmp_path):
    w = PartWriter(str(tmp_path), "p1", schema.frames_schema(), schema.files_schema(), row_group_rows=2)
    w.add(outputs.frames("/a.wav", 3))
    assert len(list((tmp_path / "_tmp").iterdir())) == 1
    w.abort()
    assert not list(tmp_path.rglob("*.parquet"))
    w.abort()  # twice is harmless


def test_a_part_of_error_rows_only_commits_its_marker_alone(tmp_path):
    w = PartWriter(str(tmp_path), "p1", schema.frames_schema(), schema.files_schema(), row_group_rows=2)
    w.commit([outputs.row("/bad.wav", status="error", error_kind="corrupt", part="p1")])
    assert not (tmp_path / "frames").exists()
    assert pq.read_table(tmp_path / "files").column("path").to_pylist() == ["/bad.wav"]


@pytest.mark.parametrize("rows_per_group,expected", [(1, [3, 3]), (3, [3, 3]), (4, [6]), (6, [6]), (7, [6])])
def test_row_groups_flush_at_exactly_row_group_rows(tmp_path, rows_per_group, expected):
    w = PartWriter(str(tmp_path), "p1", schema.frames_schema(), schema.files_schema(), rows_per_group)
    w.add(outputs.frames("/a.wav", 3))
    w.add(outputs.frames("/b.wav", 3))
    assert w.rows_added == 6
    w.commit([outputs.row("/a.wav", frames=3, part="p1"), outputs.row("/b.wav", frames=3, part="p1")])
    meta = pq.ParquetFile(tmp_path / "frames" / "part-p1.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == expected


def _drop_all(out: str, drop: set[str]) -> None:
    o = OutputDir(out)
    for files_path, frames_paths in o.committed_with_frames():
        o.drop_rows(files_path, frames_paths, drop)


def test_killed_at_every_step_of_a_resume_drop_then_dropped_again(tmp_path):
    """drop_rows rewrites frames first and the marker last: a crash between them leaves the marker naming
    the path, so the next resume drops it again; the end state equals an uninterrupted drop."""

    def two_parts(root: Path) -> None:
        _write_part(str(root), "p1", ["/a.wav", "/b.wav"])
        _write_part(str(root), "p2", ["/c.wav"])

    drop = {"/b.wav", "/c.wav"}
    two_parts(tmp_path / "probe")
    with faulty_filesystem() as state:
        _drop_all(url(tmp_path / "probe"), drop)
        log = list(state.log)
    expected = _view(tmp_path / "probe")
    assert expected == (["/a.wav"], ["/a.wav"] * 3)
    assert {op for op, _ in log} >= {"write", "mv", "rm"}
    for i, fault in enumerate(_kill_points(log)):
        gc.collect()  # the last "killed" writer's objects are finalised now, not while the next fault is planted
        out = tmp_path / f"out{i}"
        two_parts(out)
        with faulty_filesystem(fault) as state:
            with pytest.raises(Killed):
                _drop_all(url(out), drop)
            assert _rel(state.fired, out) == _rel(log[i], tmp_path / "probe"), fault
        files_seen, frames_seen = _view(out)
        assert set(frames_seen) <= set(files_seen), fault  # no frames without their row
        assert "/a.wav" in files_seen and frames_seen.count("/a.wav") == 3, fault  # what is kept is never lost
        OutputDir(str(out)).remove_uncommitted()
        _drop_all(str(out), drop)  # the next resume drops what is still named
        assert _view(out) == expected, fault
