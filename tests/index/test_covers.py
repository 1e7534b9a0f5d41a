"""Planning shards: groups of consecutive uncovered parts, the same names for the same groups, staleness."""

from __future__ import annotations

import pytest

from yamnet_beam.index.covers import BuildParams, Part, Shard, plan_groups, shard_name


def _parts(rows: list[int]) -> list[Part]:
    return [Part(f"part-{i:03d}.parquet", f"/o/frames/part-{i:03d}.parquet", f"fp{i}", r) for i, r in enumerate(rows)]


@pytest.mark.parametrize(
    "rows, covered, shard_frames, expected",
    [
        ([10, 10, 10, 10], set(), 20, [[0, 1], [2, 3]]),
        ([10, 10, 10, 10], set(), 25, [[0, 1], [2, 3]]),
        ([10, 10, 10, 10], set(), 30, [[0, 1, 2], [3]]),
        ([50, 10, 10], set(), 20, [[0], [1, 2]]),  # a part larger than a shard is a shard of its own
        ([10, 10, 10, 10, 10], {2}, 100, [[0, 1], [3, 4]]),  # grouping restarts at a covered part
        ([10, 10, 10, 10], {0, 1, 2, 3}, 20, []),
        ([0, 0, 10], set(), 5, [[0, 1], [2]]),  # empty parts ride along
    ],
)
def test_plan_groups(rows, covered, shard_frames, expected):
    parts = _parts(rows)
    uncovered = [p for i, p in enumerate(parts) if i not in covered]
    groups = plan_groups(parts, uncovered, shard_frames)
    assert [[parts.index(p) for p in g] for g in groups] == expected


def test_a_killed_plan_is_planned_the_same_for_what_is_left():
    """Built groups become covered parts; the rest are grouped exactly as before, so the same shards are built."""
    parts = _parts([7, 9, 4, 12, 3, 8, 8, 5])
    first = plan_groups(parts, parts, 16)
    for built in range(len(first)):
        covered = {p.name for g in first[: built + 1 : 2] for p in g}  # every other group got built
        left = plan_groups(parts, [p for p in parts if p.name not in covered], 16)
        assert left == [g for g in first if g[0].name not in covered]


def test_shard_names_follow_what_they_cover_and_how():
    parts = _parts([10, 10])
    assert shard_name(parts, BuildParams()) == shard_name(list(parts), BuildParams())
    rewritten = [parts[0], Part(parts[1].name, parts[1].uri, "other", 10)]
    assert shard_name(rewritten, BuildParams()) != shard_name(parts, BuildParams())
    assert shard_name(parts, BuildParams("i8")) != shard_name(parts, BuildParams())


def test_shard_json_round_trips():
    s = Shard("abc", (("part-1.parquet", "fp", 12), ("part-2.parquet", "fq", 0)), BuildParams("i8", 8, 64), 1024)
    assert Shard.from_json(s.to_json()) == s and s.rows == 12


@pytest.mark.parametrize("params", [BuildParams("f32"), BuildParams(connectivity=1), BuildParams(expansion_add=0)])
def test_bad_build_params_are_refused(params):
    with pytest.raises(ValueError):
        params.check()
