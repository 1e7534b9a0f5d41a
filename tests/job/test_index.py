"""The ``index`` job: incremental, resumable, refusing what it should; its DoFn driven by hand."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from yamnet_beam.cli import main
from yamnet_beam.index.covers import BuildParams, Part, Shard, read_shards, status
from yamnet_beam.index.shards import build_shard
from yamnet_beam.job.index import _BuildShardFn, build_index
from yamnet_beam.table.lease import Lease
from yamnet_beam.table.output import OutputDir

SHARD = 800


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "index").iterdir())}


def _stamps(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "index").iterdir()}


def test_a_second_run_builds_nothing_and_a_rewritten_part_rebuilds_only_its_shard(fresh_out):
    first = build_index(str(fresh_out), [], shard_frames=SHARD)
    shards = read_shards(OutputDir(str(fresh_out)))
    assert len(shards) >= 3 and f"built {len(shards)} shards" in first and ", kept 0," in first
    before = _stamps(fresh_out)
    again = build_index(str(fresh_out), [], shard_frames=SHARD)
    assert "built 0 shards" in again and f"kept {len(shards)}" in again and _stamps(fresh_out) == before
    o = OutputDir(str(fresh_out))
    files_part, frames_parts = next((f, fr) for f, fr in o.committed_with_frames() if fr)
    import pyarrow.parquet as pq

    victim = pq.read_table(frames_parts[0], columns=["path"]).column("path")[0].as_py()
    assert o.drop_rows(files_part, frames_parts, [victim])
    stale = [s for s in shards if any(n == Path(frames_parts[0]).name for n, _, _ in s.parts)]
    assert len(stale) == 1
    third = build_index(str(fresh_out), [], shard_frames=SHARD)
    assert "built 1 shards" in third and "removed 1 stale" in third
    after = _stamps(fresh_out)
    gone = {f for f in before if f.startswith(f"shard-{stale[0].name}")}
    assert len(gone) == 3 and not gone & set(after)
    assert {f: t for f, t in after.items() if f in before} == {f: t for f, t in before.items() if f not in gone}
    assert not status(OutputDir(str(fresh_out))).uncovered


def test_a_part_that_no_longer_exists_loses_its_shard(fresh_out):
    build_index(str(fresh_out), [], shard_frames=SHARD)
    o = OutputDir(str(fresh_out))
    files_part, frames_parts = o.committed_with_frames()[0]
    for p in (files_part, *frames_parts):
        Path(p).unlink()
    state = status(OutputDir(str(fresh_out)))
    assert len(state.stale) == 1  # the stale shard's other parts are no longer covered; nothing else changed
    names = {Path(p).name for p in frames_parts}
    assert {p.name for p in state.uncovered} == {n for n, _, _ in state.stale[0].parts} - names
    assert "built 1 shards" in build_index(str(fresh_out), [], shard_frames=SHARD)  # the group's other parts
    assert not any(n in names for s in read_shards(OutputDir(str(fresh_out))) for n, _, _ in s.parts)


def test_a_killed_index_job_run_again_gives_the_same_shards(fresh_out, tmp_path):
    clean = tmp_path / "clean"
    shutil.copytree(fresh_out, clean)
    build_index(str(clean), [], shard_frames=SHARD)
    calls = []

    def dies_on_the_second(output, name, parts, params):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return build_shard(output, name, parts, params)

    with pytest.raises(Exception, match="worker killed"):
        build_index(str(fresh_out), [], shard_frames=SHARD, build=dies_on_the_second)
    built = len(read_shards(OutputDir(str(fresh_out))))
    assert built < len(read_shards(OutputDir(str(clean))))
    (fresh_out / "index" / "shard-half.usearch").write_bytes(b"half a shard")  # a write cut short
    assert f"kept {built}" in build_index(str(fresh_out), [], shard_frames=SHARD)
    assert _files(fresh_out) == _files(clean)


def test_the_dofn_builds_its_group_with_the_builder_it_was_given():
    seen = []

    def fake(output, name, parts, params):
        seen.append((output, name, parts, params))
        return Shard(name, tuple((p.name, p.fingerprint, 7) for p in parts), params)

    fn = _BuildShardFn("/o", BuildParams("i8"), (), build=fake)
    fn.setup()
    parts = (Part("part-1.parquet", "/o/frames/part-1.parquet", "fp", 7), Part("part-2.parquet", "/o/x", "fq", 7))
    assert list(fn.process(("abc", parts))) == [14]
    assert seen == [("/o", "abc", parts, BuildParams("i8"))]


def test_other_parameters_need_mode_overwrite(fresh_out, capsys):
    assert main(["index", str(fresh_out), "--shard_frames", str(SHARD)]) == 0
    assert "built" in capsys.readouterr().out
    before = _files(fresh_out)
    assert main(["index", str(fresh_out), "--precision", "i8"]) == 2
    assert "pass --mode overwrite" in capsys.readouterr().err and _files(fresh_out) == before
    assert main(["index", str(fresh_out), "--precision", "i8", "--mode", "overwrite"]) == 0
    assert {s.params.precision for s in read_shards(OutputDir(str(fresh_out)))} == {"i8"}


def test_bad_options_exit_2_naming_them(fresh_out, capsys):
    assert main(["index", str(fresh_out), "--precison", "i8"]) == 2
    assert "--precison" in capsys.readouterr().err
    assert main(["index", str(fresh_out), "--shard_frames", "0"]) == 2
    assert "--shard_frames" in capsys.readouterr().err
    assert not (fresh_out / "index").exists()


def test_index_into_an_output_a_live_job_holds_exits_2(fresh_out, capsys):
    holder = Lease(OutputDir(str(fresh_out)), "run")
    holder.acquire(take_over_stale=False)
    try:
        assert main(["index", str(fresh_out)]) == 2
        assert f"pid {holder.holder.pid}" in capsys.readouterr().err and not (fresh_out / "index").exists()
    finally:
        holder.release()


def test_query_similar_says_how_it_searched(fresh_out, capsys):
    audio = next(p for p in OutputDir(str(fresh_out)).scan(["path"]))  # a stored path
    ref = f"{audio.column('path')[0].as_py()}:3"
    assert main(["query", str(fresh_out), "similar", "--frame", ref, "--top", "3"]) == 0
    assert "search: exact: no index" in capsys.readouterr().out
    assert main(["index", str(fresh_out)]) == 0
    capsys.readouterr()
    assert main(["query", str(fresh_out), "similar", "--frame", ref, "--top", "3"]) == 0
    assert "search: index: 1 shards (f16) over" in capsys.readouterr().out
    assert main(["query", str(fresh_out), "similar", "--frame", ref, "--top", "3", "--exact"]) == 0
    assert "search: exact: " in capsys.readouterr().out


def test_run_mode_overwrite_removes_the_index(fresh_out):
    build_index(str(fresh_out), [], shard_frames=SHARD)
    OutputDir(str(fresh_out)).clear()
    assert not (fresh_out / "index").exists()
