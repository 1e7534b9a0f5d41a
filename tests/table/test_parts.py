"""Writing and committing parts, and the output directory's clean-up (Beam-free)."""

import pyarrow.parquet as pq

from tests.support import outputs
from yamnet_beam.table import schema
from yamnet_beam.table.output import OutputDir
from yamnet_beam.table.parts import PartWriter

_frames, _row = outputs.frames, outputs.row


def _commit(out, pid, paths, frames_per_file=3, row_group_rows=4):
    outputs.commit(out, pid, paths, frames_per_file, row_group_rows)


def test_writer_commits_frames_then_marker(tmp_path):
    _commit(tmp_path, "p1", ["/a.wav", "/b.wav", "/c.wav"])
    frames = pq.ParquetFile(tmp_path / "frames" / "part-p1.parquet")
    # 3 frames per file, flushed once >= 4 rows are pending: a group of 6, then the last 3 at commit
    assert [frames.metadata.row_group(i).num_rows for i in range(frames.metadata.num_row_groups)] == [6, 3]
    assert schema.read_metadata(frames.schema_arrow) == {"x": 1}
    paths = pq.read_table(tmp_path / "files" / "part-p1.parquet").column("path").to_pylist()
    assert paths == ["/a.wav", "/b.wav", "/c.wav"]
    assert list((tmp_path / "_tmp").iterdir()) == []


def test_commit_is_idempotent(tmp_path):
    _commit(tmp_path, "p1", ["/a.wav"])
    first = pq.read_table(tmp_path / "frames" / "part-p1.parquet")
    _commit(tmp_path, "p1", ["/a.wav"])  # a retried part rewrites the same names
    assert pq.read_table(tmp_path / "frames").equals(first)
    assert len(list((tmp_path / "files").iterdir())) == 1


def test_abort_leaves_nothing(tmp_path):
    w = PartWriter(str(tmp_path), "p1", schema.frames_schema(), schema.files_schema(), 1)
    w.add(_frames("/a.wav", 3))  # already streaming into a temp file
    assert list((tmp_path / "_tmp").iterdir())
    w.abort()
    assert list((tmp_path / "_tmp").iterdir()) == [] and not (tmp_path / "frames").exists()


def test_remove_uncommitted(tmp_path):
    _commit(tmp_path, "done", ["/a.wav"])
    _commit(tmp_path, "half", ["/b.wav"])
    (tmp_path / "files" / "part-half.parquet").unlink()  # killed between the two renames
    (tmp_path / "_tmp" / "frames-x-1.parquet").write_bytes(b"partial")  # killed mid-write
    removed = OutputDir(str(tmp_path)).remove_uncommitted()
    assert sorted(p.rsplit("/", 1)[1] for p in removed) == ["frames-x-1.parquet", "part-half.parquet"]
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["part-done.parquet"]
    assert pq.read_table(tmp_path / "frames").column("path").unique().to_pylist() == ["/a.wav"]


def _files_paths(root) -> list[str]:
    """Every committed files/ path, read straight from the Parquet parts."""
    files = root / "files"
    return sorted(pq.read_table(files).column("path").to_pylist()) if files.exists() and any(files.iterdir()) else []


def _drop(out: OutputDir, paths: set[str]) -> list[str]:
    """What DropSupersededRows does: each committed part rewritten once, with only the paths it holds."""
    touched = []
    for files_path, frames_paths in out.committed_with_frames():
        held = set(pq.read_table(files_path).column("path").to_pylist()) & paths
        if held and out.drop_rows(files_path, frames_paths, held):
            touched.append(files_path.rsplit("part-", 1)[1].removesuffix(".parquet"))
    return touched


def test_drop_rows_rewrites_only_affected_parts(tmp_path):
    _commit(tmp_path, "p1", ["/a.wav", "/b.wav"])
    _commit(tmp_path, "p2", ["/c.wav"])
    _commit(tmp_path, "p3", ["/d.wav"])
    untouched = (tmp_path / "frames" / "part-p2.parquet").stat().st_mtime_ns
    out = OutputDir(str(tmp_path))
    assert _drop(out, {"/b.wav", "/d.wav"}) == ["p1", "p3"]
    assert _files_paths(tmp_path) == ["/a.wav", "/c.wav"]
    assert sorted(set(pq.read_table(tmp_path / "frames").column("path").to_pylist())) == ["/a.wav", "/c.wav"]
    assert not (tmp_path / "files" / "part-p3.parquet").exists()  # emptied parts disappear
    assert (tmp_path / "frames" / "part-p2.parquet").stat().st_mtime_ns == untouched
    # metadata survives the rewrite
    assert schema.read_metadata(pq.read_schema(tmp_path / "frames" / "part-p1.parquet")) == {"x": 1}
    assert _drop(out, {"/b.wav"}) == []  # idempotent


def test_has_results_and_clear(tmp_path):
    out = OutputDir(str(tmp_path / "o"))
    assert out.has_results() == []
    _commit(tmp_path / "o", "p1", ["/a.wav"])
    assert out.has_results() == ["frames", "files"]
    out.clear()
    assert out.has_results() == [] and _files_paths(tmp_path / "o") == []


def test_segment_frames_are_committed_by_their_files_part(tmp_path):
    for name in ["long-s00000", "long-s00001", "orphan-s00000"]:
        w = PartWriter(str(tmp_path), name, schema.frames_schema(), schema.files_schema(), 4)
        w.add(_frames(f"/{name.split('-')[0]}.wav", 2))
        w.commit_frames()
    w = PartWriter(str(tmp_path), "long", schema.frames_schema(), schema.files_schema(), 4)
    w.commit([_row("/long.wav", frames=4, part="long")])  # the long file's marker, written last
    out = OutputDir(str(tmp_path))
    removed = out.remove_uncommitted()
    assert [p.rsplit("/", 1)[1] for p in removed] == ["part-orphan-s00000.parquet"]
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        "part-long-s00000.parquet",
        "part-long-s00001.parquet",
    ]
    assert _drop(out, {"/long.wav"}) == ["long"]  # resume drops every segment with the file
    assert not (tmp_path / "frames").exists() or not list((tmp_path / "frames").iterdir())


def test_drop_rows_rewrites_one_part_with_its_own_paths(tmp_path):
    """The resume join's drop: each part rewritten once, with only the paths it holds (linear, not parts x paths)."""
    _commit(tmp_path, "p1", ["/a.wav", "/b.wav"])
    _commit(tmp_path, "p2", ["/c.wav"])
    out = OutputDir(str(tmp_path))
    listed = dict(out.committed_with_frames())
    assert listed == {
        str(tmp_path / "files" / "part-p1.parquet"): (str(tmp_path / "frames" / "part-p1.parquet"),),
        str(tmp_path / "files" / "part-p2.parquet"): (str(tmp_path / "frames" / "part-p2.parquet"),),
    }
    p1 = str(tmp_path / "files" / "part-p1.parquet")
    assert out.drop_rows(p1, listed[p1], ["/b.wav"])
    assert _files_paths(tmp_path) == ["/a.wav", "/c.wav"]
    assert sorted(set(pq.read_table(tmp_path / "frames").column("path").to_pylist())) == ["/a.wav", "/c.wav"]
    assert schema.read_metadata(pq.read_schema(tmp_path / "frames" / "part-p1.parquet")) == {"x": 1}
    assert not out.drop_rows(p1, listed[p1], ["/b.wav"])  # idempotent: a retried drop changes nothing
    assert out.drop_rows(p1, listed[p1], ["/a.wav"])
    assert not (tmp_path / "files" / "part-p1.parquet").exists()  # emptied parts disappear


def test_clear_removes_every_owned_name_and_nothing_else(tmp_path):
    """``--mode overwrite``: tables, derived tables (heads, clips), caches and run files go; the user's files
    and the lease (held by the job that clears) stay."""
    root = tmp_path / "o"
    _commit(root, "p1", ["/a.wav"])
    owned = {
        "heads/birds/part-p1.parquet": "old scores",
        "clips/part-00000-of-00001.parquet": "old clips",
        "_similar_cache/p1.npy": "old cache",
        "_runs/r1/summary.json": "{}",
        "_tmp/frames-x.parquet": "",
        "manifest.json": "{}",
        "labels.csv": "index,mid,display_name\n",
    }
    kept = {"_lease.json": "{}", "notes.txt": "mine", "mine/data.csv": "mine"}
    for name, text in {**owned, **kept}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    OutputDir(str(root)).clear()
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert left == sorted(kept)
