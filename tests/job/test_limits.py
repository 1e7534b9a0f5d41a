"""The part limits at their exact boundaries: a part holds at most ``max_files`` files and ``max_bytes`` bytes.

A part may be filled *to* each limit, never past it (except a single file larger than ``max_bytes``).
"""

from __future__ import annotations

import pytest

from yamnet_beam.job.inputs import InputFile
from yamnet_beam.job.parts import cut_bucket, part_shape, plan_parts


def _files(sizes):
    return [InputFile(f"/a/{i:03d}.wav", s, 1.0) for i, s in enumerate(sizes)]


@pytest.mark.parametrize(
    "sizes,max_files,max_bytes,expected",
    [
        ([10, 10, 10, 10, 10], 64, 20, [2, 2, 1]),  # exactly max_bytes fits
        ([10, 11, 10], 64, 20, [1, 1, 1]),  # one byte over starts a new part
        ([10, 9, 11], 64, 20, [2, 1]),
        ([10, 10, 1], 64, 20, [2, 1]),
        ([5] * 7, 3, 10**6, [3, 3, 1]),  # exactly max_files fits, one more starts a new part
        ([5] * 6, 3, 10**6, [3, 3]),
        ([30, 5, 5], 64, 20, [1, 2]),  # a file over the limit alone, then the next part starts empty
        ([5, 30, 5], 64, 20, [1, 1, 1]),
        ([0, 0, 0], 2, 1, [2, 1]),  # unknown or empty sizes count as 0 bytes
    ],
)
def test_plan_parts_fills_to_each_limit(sizes, max_files, max_bytes, expected):
    parts = plan_parts(_files(sizes), "fp", max_files, max_bytes, min_parts=1)
    assert [len(p.files) for p in parts] == expected
    for p in parts:
        assert len(p.files) <= max_files
        assert len(p.files) == 1 or sum(f.size_bytes for f in p.files) <= max_bytes


@pytest.mark.parametrize("n,expected", [(16, 1), (17, 2), (32, 2), (33, 3)])
def test_min_parts_rule_at_its_edges(n, expected):
    """n files spread over at least 16 parts: ceil(n / 16) files per part."""
    parts = plan_parts(_files([1] * n), "fp", 64, 10**6)
    assert max(len(p.files) for p in parts) == expected
    assert part_shape(n, 64)[0] == expected  # the in-pipeline planning's files per part


@pytest.mark.parametrize("bad", [(0, 10), (10, 0)])
def test_limits_must_be_positive(bad):
    with pytest.raises(ValueError):
        plan_parts(_files([1]), "fp", *bad)


def test_cut_bucket_keeps_the_first_occurrence_and_the_limits():
    files = _files([10, 10, 10])
    items = [(2, files[0]), (0, InputFile(files[0].path, 99, 2.0)), (1, files[1]), (3, files[2])]
    parts = cut_bucket(items, "fp", 2, 20)
    assert [[f.size_bytes for f in p.files] for p in parts] == [[99], [10, 10]]
