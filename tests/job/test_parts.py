"""Parts: planning, ids and resume decisions (no Beam)."""

import pytest

from tests.support import outputs
from yamnet_beam.job.inputs import InputFile
from yamnet_beam.job.parts import RESUME_COLUMNS, fingerprint, is_done, plan_parts
from yamnet_beam.table import schema

_row = outputs.row


def _inputs(n, size=10):
    return [InputFile(f"/a/{i}.wav", size, 100.0 + i, None) for i in range(n)]


@pytest.mark.parametrize(
    "n,max_files,max_bytes,min_parts,sizes",
    [
        (10, 3, 1000, 1, [3, 3, 3, 1]),
        (5, 64, 25, 1, [2, 2, 1]),
        (1, 1, 1, 1, [1]),
        (0, 4, 100, 1, []),
        (24, 64, 10**6, 16, [2] * 12),  # few small files are still spread over several parts
        (10, 64, 10**6, 16, [1] * 10),
        (100, 3, 10**6, 16, [3] * 33 + [1]),
    ],
)
def test_plan_parts_groups_in_order(n, max_files, max_bytes, min_parts, sizes):
    parts = plan_parts(_inputs(n), "fp", max_files, max_bytes, min_parts)
    assert [len(p.files) for p in parts] == sizes
    assert [f for p in parts for f in p.files] == _inputs(n)  # every input once, in order
    assert len({p.id for p in parts}) == len(parts)


def test_part_ids_depend_on_inputs_and_fingerprint():
    a = plan_parts(_inputs(4), "fp", 2, min_parts=1)
    assert [p.id for p in a] == [p.id for p in plan_parts(_inputs(4), "fp", 2, min_parts=1)]  # deterministic
    assert a[0].id != plan_parts(_inputs(4), "other", 2, min_parts=1)[0].id
    changed = _inputs(4)
    changed[0] = InputFile("/a/0.wav", 11, 100.0, None)
    b = plan_parts(changed, "fp", 2, min_parts=1)
    assert b[0].id != a[0].id and b[1].id == a[1].id


def test_large_file_gets_its_own_part():
    files = [InputFile("/a/small1", 10), InputFile("/a/huge", 10_000), InputFile("/a/small2", 10)]
    assert [len(p.files) for p in plan_parts(files, "fp", 64, 100, min_parts=1)] == [1, 1, 1]


def test_fingerprint_is_order_insensitive_and_sensitive_to_values():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


@pytest.mark.parametrize(
    "row,now,redo",
    [
        (dict(status="ok", size_bytes=10, mtime=1.0), InputFile("/a.wav", 10, 1.0), False),
        (dict(status="ok", size_bytes=10, mtime=1.0), InputFile("/a.wav", 11, 1.0), True),  # grew
        (dict(status="ok", size_bytes=10, mtime=1.0), InputFile("/a.wav", 10, 2.0), True),  # touched
        (dict(status="ok", size_bytes=10, etag="e1"), InputFile("/a.wav", 10, None, "e2"), True),
        (dict(status="error", error_kind="io_error", size_bytes=10, mtime=1.0), InputFile("/a.wav", 10, 1.0), True),
        (dict(status="error", error_kind="timeout", size_bytes=10, mtime=1.0), InputFile("/a.wav", 10, 1.0), True),
        (dict(status="error", error_kind="internal", size_bytes=10, mtime=1.0), InputFile("/a.wav", 10, 1.0), True),
        (dict(status="error", error_kind="corrupt", size_bytes=10, mtime=1.0), InputFile("/a.wav", 10, 1.0), False),
        (dict(status="error", error_kind="corrupt", size_bytes=10, mtime=1.0), InputFile("/a.wav", 9, 1.0), True),
        (dict(status="ok", size_bytes=10, mtime=None), InputFile("/a.wav", 10, 5.0), False),  # unknown
    ],
)
def test_is_done(row, now, redo):
    """Resume's rule: skip only if the row is ok or non-transient, same fingerprint and identity."""
    [stored] = schema.files_table([_row("/a.wav", **row)]).select(RESUME_COLUMNS).to_pylist()
    assert is_done(stored, now, "fp") is not redo


def test_other_fingerprint_redoes_everything():
    [stored] = schema.files_table([_row("/a.wav", size_bytes=10, mtime=1.0)]).select(RESUME_COLUMNS).to_pylist()
    assert is_done(stored, InputFile("/a.wav", 10, 1.0), "fp")
    assert not is_done(stored, InputFile("/a.wav", 10, 1.0), "new-fp")
