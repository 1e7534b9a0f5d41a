"""The part layer's smaller promises, each pinned: ids, buckets, formats, and what clear and drop_rows touch."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support import outputs
from yamnet_beam.job.inputs import InputFile
from yamnet_beam.job.parts import (
    bucket_of,
    cut_bucket,
    fingerprint,
    long_file_part_id,
    part_shape,
    plan_parts,
)
from yamnet_beam.table import schema
from yamnet_beam.table.output import OutputDir
from yamnet_beam.table.parts import PartWriter


def _files(n, size=1):
    return [InputFile(f"/a/{i:04d}.wav", size, 1.0) for i in range(n)]


def test_every_part_id_depends_on_the_fingerprint_and_has_twenty_hex_digits():
    a, b = plan_parts(_files(5), "fp", 2, min_parts=1), plan_parts(_files(5), "other", 2, min_parts=1)
    assert [len(p.files) for p in a] == [2, 2, 1]
    assert all(x.id != y.id for x, y in zip(a, b, strict=True))  # the last part's too
    assert all(len(p.id) == 20 and int(p.id, 16) >= 0 for p in a)


def test_part_ids_of_non_utf8_names():
    [p] = plan_parts([InputFile("/a/caf\udce9.wav", 1, 1.0)], "fp")  # a Latin-1 name on a Linux disk
    assert len(p.id) == 20 and p.id != plan_parts([InputFile("/a/cafe.wav", 1, 1.0)], "fp")[0].id


def test_default_limits():
    parts = plan_parts(_files(4000), "fp")  # 4000 / 16 parts would allow 250 per part: the default 64 holds
    assert max(len(p.files) for p in parts) == 64
    big = plan_parts(_files(3, 40 << 20), "fp", min_parts=1)  # 64 MB by default: 40 + 40 is over it
    assert [len(p.files) for p in big] == [1, 1, 1]


@pytest.mark.parametrize(
    "n,expected", [(1, (1, 1)), (8, (1, 1)), (9, (1, 2)), (16, (1, 2)), (1000, (63, 2)), (10**6, (64, 1954))]
)
def test_part_shape(n, expected):
    """ceil(n / 16) files per part (at most part_files), about 8 full parts per bucket."""
    assert part_shape(n, 64) == expected


def test_cut_bucket_cuts_one_part_when_it_fits():
    items = [(i, f) for i, f in enumerate(_files(2))]
    [part] = cut_bucket(items, "fp", 64, 1 << 20)
    assert len(part.files) == 2 and part.id == plan_parts(_files(2), "fp", 64, 1 << 20, min_parts=1)[0].id


def test_bucket_of_is_stable_and_spreads():
    assert bucket_of("/a/x.wav", 7) == bucket_of("/a/x.wav", 7)
    assert bucket_of("/a/x.wav", 1) == 0
    assert len({bucket_of(f"/a/{i}.wav", 8) for i in range(200)}) == 8
    assert {bucket_of(f"/a/{i}.wav", 8) for i in range(200)} <= set(range(8))


def test_long_file_part_id_is_its_own():
    f = InputFile("/a/long.flac", 10, 1.0)
    pid = long_file_part_id(f, "fp")
    assert len(pid) == 20 and pid == long_file_part_id(f, "fp")
    assert pid not in (plan_parts([f], "fp")[0].id, long_file_part_id(f, "other"))


def test_fingerprint_is_short_and_takes_any_value():
    fp = fingerprint({"model": Path("/m.tflite"), "hop": 7680})
    assert len(fp) == 16 and fp == fingerprint({"hop": 7680, "model": "/m.tflite"})  # str() of odd values


def test_parts_are_zstd_with_their_metadata_and_no_dictionary_for_lists(tmp_path):
    meta = {"model_sha256": "abc"}
    w = PartWriter(str(tmp_path), "p1", schema.frames_schema(metadata=meta), schema.files_schema(meta), 2)
    w.add(outputs.frames("/a.wav", 3))
    w.commit([outputs.row("/a.wav", frames=3, part="p1")])
    for table in ("frames", "files"):
        f = pq.ParquetFile(tmp_path / table / "part-p1.parquet")
        assert schema.read_metadata(f.schema_arrow) == meta, table
        rg = f.metadata.row_group(0)
        assert {rg.column(i).compression for i in range(rg.num_columns)} == {"ZSTD"}, table
    f = pq.ParquetFile(tmp_path / "frames" / "part-p1.parquet")
    cols = {
        f.metadata.row_group(0).column(i).path_in_schema: f.metadata.row_group(0).column(i)
        for i in range(f.metadata.num_columns)
    }
    scores = next(c for name, c in cols.items() if name.startswith("scores"))
    assert not scores.has_dictionary_page and not scores.is_stats_set
    assert cols["path"].is_stats_set


def test_committed_parts_and_read_parts(tmp_path):
    outputs.commit(tmp_path, "p2", ["/b.wav"])
    outputs.commit(tmp_path, "p1", ["/a.wav"])
    (tmp_path / "frames" / "part-orphan.parquet").write_bytes(b"x")
    out = OutputDir(str(tmp_path))
    markers = out.committed_parts()
    assert markers == {str(tmp_path / "files" / f"part-{p}.parquet") for p in ("p1", "p2")}
    tables = out.read_parts(markers, ["path"])
    assert [t.column_names for t in tables] == [["path"], ["path"]]
    assert [t.column("path").to_pylist() for t in tables] == [["/a.wav"], ["/b.wav"]]  # sorted by part path


def test_clear_removes_every_derived_table_and_nothing_else(tmp_path):
    outputs.commit(tmp_path, "p1", ["/a.wav"])
    derived = ["labels.csv", "manifest.json", "clips/part-0.parquet", "_similar_cache/x.npy", "_runs/r/plan.json"]
    for name in derived + ["notes.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    OutputDir(str(tmp_path)).clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_drop_rows_skips_a_missing_part_and_says_whether_it_changed(tmp_path):
    outputs.commit(tmp_path, "p1", ["/a.wav", "/b.wav"])
    out = OutputDir(str(tmp_path))
    [(files_path, frames_paths)] = out.committed_with_frames()
    gone = str(tmp_path / "frames" / "part-p1-s00000.parquet")  # listed, but already removed
    assert out.drop_rows(files_path, [gone, *frames_paths], ["/b.wav"]) is True
    assert out.drop_rows(files_path, frames_paths, ["/b.wav"]) is False
    assert pq.read_table(tmp_path / "frames").column("path").unique().to_pylist() == ["/a.wav"]
    rg = pq.ParquetFile(frames_paths[0]).metadata.row_group(0)
    assert rg.column(0).compression == "ZSTD"  # the rewrite keeps the part's format
