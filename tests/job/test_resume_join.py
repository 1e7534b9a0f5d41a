"""The resume join and the run summary, step by step: the DoFns driven by hand, then the composites on a TestPipeline.

Expectations are independent of the code under test: the rule is written out per case (what today's
launcher-side resume decided), the files/ rows are read back with pyarrow, and the summary is compared
with a ``collections.Counter`` over the rows.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.pvalue import TaggedOutput
from apache_beam.testing import test_pipeline as beam_test_pipeline

from tests.support import outputs
from yamnet_beam.job.inputs import InputFile
from yamnet_beam.job.parts import RESUME_COLUMNS, plan_parts
from yamnet_beam.job.resume import (
    SKIPPED_TAG,
    SUPERSEDED_TAG,
    DropSupersededRows,
    ResolveResume,
    _DecideInputFn,
    _DropRowsFn,
)
from yamnet_beam.job.summary import SummarizeRun, _SumTalliesFn, errors_by_kind
from yamnet_beam.table import schema
from yamnet_beam.table.layout import SUMMARY_FILE
from yamnet_beam.table.output import OutputDir

FP = "fp"


def _previous(path: str, files_part: str = "/o/files/part-p1.parquet", frames=("/o/frames/part-p1.parquet",), **kw):
    """A previous files/ row as ReadPreviousRows gives it: (files part, frames parts, row)."""
    row = {**outputs.row(path, **{"size_bytes": 10, "mtime": 1.0, **kw}), "frames": 3, "duration_s": 1.0}
    return files_part, tuple(frames), {k: row[k] for k in [*RESUME_COLUMNS, "frames", "duration_s"]}


def _decide(key: str, listed, previous) -> tuple[list, list, list]:
    """Runs one join group through _DecideInputFn: (todo, skipped rows, superseded (part, (frames, path)))."""
    fn = _DecideInputFn(FP)
    todo, skipped, superseded = [], [], []
    for out in fn.process((key, {"listed": listed, "previous": previous})):
        if isinstance(out, TaggedOutput):
            (skipped if out.tag == SKIPPED_TAG else superseded).append(out.value)
            assert out.tag in (SKIPPED_TAG, SUPERSEDED_TAG)
        else:
            todo.append(out)
    return todo, skipped, superseded


# --- _DecideInputFn by hand ---------------------------------------------------------------------------


def test_unchanged_ok_input_is_skipped_with_its_old_row():
    item = InputFile("/a.wav", 10, 1.0)
    prev = _previous("/a.wav")
    assert _decide("/a.wav", [((0, 0), item)], [prev]) == ([], [prev[2]], [])


@pytest.mark.parametrize(
    "item,row",
    [
        (InputFile("/a.wav", 11, 1.0), {}),  # grew
        (InputFile("/a.wav", 10, 2.0), {}),  # touched
        (InputFile("/a.wav", 10, None, "e2"), {"etag": "e1"}),  # another object version
        (InputFile("/a.wav", 10, 1.0), {"status": "error", "error_kind": "io_error"}),  # transient kinds
        (InputFile("/a.wav", 10, 1.0), {"status": "error", "error_kind": "timeout"}),
        (InputFile("/a.wav", 10, 1.0), {"status": "error", "error_kind": "internal"}),
        (InputFile("/a.wav", 10, 1.0), {"fingerprint": "another model"}),
    ],
)
def test_changed_or_transient_input_is_redone_and_its_row_superseded(item, row):
    prev = _previous("/a.wav", **row)
    todo, skipped, superseded = _decide("/a.wav", [((0, 5), item)], [prev])
    assert todo == [((0, 5), item)] and skipped == []
    assert superseded == [("/o/files/part-p1.parquet", (("/o/frames/part-p1.parquet",), "/a.wav"))]


def test_non_transient_error_of_an_unchanged_file_is_kept():
    item = InputFile("/a.wav", 10, 1.0)
    prev = _previous("/a.wav", status="error", error_kind="corrupt")
    assert _decide("/a.wav", [((0, 0), item)], [prev]) == ([], [prev[2]], [])


def test_every_previous_row_of_a_redone_path_is_superseded():
    """Two rows of one path (an interrupted drop left both): both go, wherever they are, and the input is redone."""
    item = InputFile("/a.wav", 10, 1.0)
    previous = [_previous("/a.wav"), _previous("/a.wav", "/o/files/part-p2.parquet", ("/o/frames/part-p2.parquet",))]
    todo, skipped, superseded = _decide("/a.wav", [((0, 0), item)], previous)
    assert todo == [((0, 0), item)] and skipped == []
    assert sorted(part for part, _ in superseded) == ["/o/files/part-p1.parquet", "/o/files/part-p2.parquet"]


def test_rows_of_inputs_this_run_does_not_name_are_left_alone():
    assert _decide("/old.wav", [], [_previous("/old.wav", status="error", error_kind="io_error")]) == ([], [], [])


def test_new_input_is_todo_and_the_first_listing_wins():
    first, later = InputFile("/n.wav", 5, 2.0), InputFile("/n.wav")
    assert _decide("/n.wav", [((1, 0), later), ((0, 9), first)], []) == ([((0, 9), first)], [], [])


def test_manifest_entry_gets_its_identity_on_the_worker(tmp_path):
    """A manifest entry has no size/mtime; with a previous row it is stat'ed, so an unchanged file is skipped."""
    f = tmp_path / "a.wav"
    f.write_bytes(b"x" * 10)
    entry = InputFile(str(f))
    same = _previous(str(f), size_bytes=10, mtime=os.stat(f).st_mtime)
    assert _decide(str(f), [((0, 0), entry)], [same])[1] == [same[2]]
    changed = _previous(str(f), size_bytes=9, mtime=os.stat(f).st_mtime)
    [(_, redone)] = _decide(str(f), [((0, 0), entry)], [changed])[0]
    assert (redone.size_bytes, redone.mtime) == (10, os.stat(f).st_mtime)  # the stat's identity, stored in the row


def test_drop_rows_fn_rewrites_a_part_once_with_its_paths(tmp_path):
    outputs.commit(tmp_path, "p1", ["/a.wav", "/b.wav", "/c.wav"])
    files = str(tmp_path / "files" / "part-p1.parquet")
    frames = (str(tmp_path / "frames" / "part-p1.parquet"),)
    fn = _DropRowsFn(str(tmp_path))
    assert list(fn.process((files, [(frames, "/a.wav"), (frames, "/c.wav")]))) == [1]
    assert pq.read_table(files).column("path").to_pylist() == ["/b.wav"]
    assert set(pq.read_table(frames[0]).column("path").to_pylist()) == {"/b.wav"}
    assert list(fn.process((files, [(frames, "/a.wav")]))) == []  # a retried bundle changes nothing


# --- the composites on a TestPipeline -----------------------------------------------------------------

_COLLECTED: dict[str, list] = {}


def _collect(x, tag: str) -> None:
    """Module-level (pickled by reference), so the elements land in this process's _COLLECTED."""
    _COLLECTED.setdefault(tag, []).append(x)


def test_resolve_resume_and_drop_on_committed_output(tmp_path):
    """Listing joined with real files/ parts: skipped, redone (changed, transient), new; other inputs' rows stay."""
    out = tmp_path / "o"
    outputs.commit(out, "p1", ["/keep.wav", "/grew.wav"])
    outputs.commit(out, "p2", ["/flaky.wav"], status="error", error_kind="timeout")
    outputs.commit(out, "p3", ["/not-named.wav"], status="error", error_kind="io_error")
    listed = [
        ((0, 0), InputFile("/keep.wav", 10, 1.0)),
        ((0, 1), InputFile("/grew.wav", 20, 1.0)),
        ((0, 2), InputFile("/flaky.wav", 10, 1.0)),
        ((0, 3), InputFile("/new.wav", 1, 1.0)),
    ]
    _COLLECTED.clear()
    with beam_test_pipeline.TestPipeline() as p:
        resolved = p | beam.Create(listed) | ResolveResume(str(out), FP)
        _ = resolved.todo | "T" >> beam.Map(_collect, "todo")
        _ = resolved.skipped | "S" >> beam.Map(_collect, "skipped")
        rewritten = resolved.superseded | DropSupersededRows(str(out))
        _ = rewritten | "R" >> beam.Map(_collect, "rewritten")
    assert sorted(f.path for _, f in _COLLECTED["todo"]) == ["/flaky.wav", "/grew.wav", "/new.wav"]
    assert [r["path"] for r in _COLLECTED["skipped"]] == ["/keep.wav"]
    assert _COLLECTED["rewritten"] == [2]  # p1 rewritten without /grew.wav, p2 emptied and removed
    assert sorted(pq.read_table(out / "files").column("path").to_pylist()) == ["/keep.wav", "/not-named.wav"]
    assert sorted(set(pq.read_table(out / "frames").column("path").to_pylist())) == ["/keep.wav", "/not-named.wav"]
    assert not (out / "files" / "part-p2.parquet").exists()
    assert OutputDir(str(out)).remove_uncommitted() == []  # every rewrite was renamed into place


def _random_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    kinds = ["io_error", "timeout", "corrupt", "empty_file", "unsupported"]
    rows = []
    for i in range(n):
        ok = rng.random() < 0.6
        rows.append(
            outputs.row(
                f"/r/{i}.wav",
                status="ok" if ok else "error",
                error_kind=None if ok else rng.choice(kinds),
                frames=rng.randrange(0, 50) if ok else 0,
                duration_s=rng.uniform(0, 30) if ok else None,
            )
        )
    return rows


def _part(i: int, n: int):
    """One Part of ``n`` files, as FormParts emits them."""
    [part] = plan_parts([InputFile(f"/p{i}/{k}.wav", 1, 1.0) for k in range(n)], FP, n, 1 << 30, min_parts=1)
    return part


def test_summary_combine_equals_an_independent_count(tmp_path):
    rows, skipped = _random_rows(500, 1), _random_rows(120, 2)
    parts = [_part(i, k) for i, k in enumerate([64, 64, 7])]
    run_uri = str(tmp_path / "_runs" / "r1")
    with beam_test_pipeline.TestPipeline() as p:
        pcolls = {
            "rows": p | "Rows" >> beam.Create(rows),
            "skipped": p | "Skipped" >> beam.Create(skipped),
            "parts": p | "Parts" >> beam.Create(parts),
        }
        _ = pcolls | SummarizeRun(run_uri)
    tally = json.loads((tmp_path / "_runs" / "r1" / SUMMARY_FILE).read_text())
    both = rows + skipped
    assert tally["rows"] == 500 and tally["skipped"] == 120
    assert tally["ok"] == sum(r["status"] == "ok" for r in both)
    assert tally["error"] == sum(r["status"] == "error" for r in both)
    assert errors_by_kind(tally) == dict(Counter(r["error_kind"] for r in both if r["status"] == "error"))
    assert tally["frames"] == sum(r["frames"] for r in both)
    assert tally["duration_s"] == pytest.approx(sum(r["duration_s"] or 0 for r in both))
    assert tally["processed_s"] == pytest.approx(sum(r["duration_s"] or 0 for r in rows))
    assert (tally["parts"], tally["files_todo"]) == (3, 135)


def test_summary_of_an_empty_run_is_written_with_zeros(tmp_path):
    """A resume with nothing to do still leaves a summary (the launcher treats a missing one as a failed job)."""
    run_uri = str(tmp_path / "_runs" / "r2")
    with beam_test_pipeline.TestPipeline() as p:
        empty = p | beam.Create([]).with_output_types(dict)
        _ = {"rows": empty, "parts": p | "NoParts" >> beam.Create([])} | SummarizeRun(run_uri)
    assert json.loads((tmp_path / "_runs" / "r2" / SUMMARY_FILE).read_text()) == {}
    assert _SumTalliesFn().extract_output(_SumTalliesFn().create_accumulator()) == {}


def test_schema_has_the_columns_the_join_reads():
    assert set([*RESUME_COLUMNS, "frames", "duration_s"]) <= set(schema.files_schema().names)
