"""The index against exact search over real YAMNet embeddings of a real run (a few thousand frames)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.index_data import exact_table
from yamnet_beam.analysis import similar as sim
from yamnet_beam.analysis.output import open_output
from yamnet_beam.index.covers import BuildParams, committed_parts, plan_groups, shard_name, status
from yamnet_beam.index.search import open_shards, search
from yamnet_beam.index.shards import build_shard
from yamnet_beam.table.output import OutputDir


def _index(out, shard_frames: int, params: BuildParams | None = None) -> None:
    """Builds every shard in this process (the job's DoFn does exactly this per group)."""
    params = params or BuildParams()
    o = OutputDir(str(out))
    parts = committed_parts(o)
    from yamnet_beam.job.index import _with_rows

    for g in plan_groups(parts, _with_rows(o, parts), shard_frames):
        build_shard(str(out), shard_name(g, params), g, params)


def _got(t) -> list[tuple[str, int]]:
    return list(zip(t.column("path").to_pylist(), t.column("frame").to_pylist(), strict=True))


def _hits(rows, m, i: int, got: list[tuple[str, int]], k: int, tol: float = 1e-3) -> int:
    """Returned rows whose exact similarity reaches the k-th best's (ties count: silence repeats a vector)."""
    sims = m @ m[i]
    kth = np.sort(sims)[::-1][k - 1]
    where = {r: j for j, r in enumerate(rows)}
    return sum(sims[where[g]] >= kth - tol for g in got)


def test_the_run_is_big_enough(index_source):
    rows, _ = exact_table(index_source)
    assert len(rows) >= 2000 and len(OutputDir(str(index_source)).frame_files) >= 6


@pytest.mark.parametrize("precision", ["f16", "i8"])
def test_recall_at_10_against_exact_search(fresh_out, precision):
    _index(fresh_out, 1000, BuildParams(precision))
    o = OutputDir(str(fresh_out))
    state = status(o)
    assert len(state.current) >= 2 and not state.uncovered and all(len(s.parts) > 1 for s in state.current)
    shards = open_shards(o, state.current)
    rows, m = exact_table(fresh_out)
    queries = np.random.default_rng(1).choice(len(rows), 200, replace=False)
    hits = 0
    for i in queries:
        t = search(shards, m[i], 10)
        assert t.num_rows == 10
        hits += _hits(rows, m, i, _got(t), 10)
    print(f"recall@10 {precision}: {hits / (10 * len(queries)):.3f}")
    assert hits / (10 * len(queries)) >= 0.9


def test_top_k_equals_exact_when_k_covers_every_shard(fresh_out):
    """k >= a shard's size: each shard is compared exactly, so the index's answer is exact search's."""
    _index(fresh_out, 150)
    o = OutputDir(str(fresh_out))
    shards = open_shards(o, status(o).current)
    rows, m = exact_table(fresh_out)
    k = max(len(s) for s in shards)
    for i in (0, len(rows) // 3, len(rows) - 1):
        t = search(shards, m[i], k)
        got = _got(t)
        assert len(set(got)) == k and _hits(rows, m, i, got, k, tol=2e-3) == k
        sims = m @ m[i]
        where = {r: j for j, r in enumerate(rows)}
        np.testing.assert_allclose(t.column("similarity").to_numpy(), sims[[where[g] for g in got]], atol=2e-3)


@pytest.mark.parametrize("glob", ["*tone_1*", "*/noise_*", "*chirp*"])
def test_path_filter_returns_only_matching_paths_and_their_nearest(fresh_out, glob):
    import fnmatch

    _index(fresh_out, 1000)
    o = OutputDir(str(fresh_out))
    shards = open_shards(o, status(o).current)
    rows, m = exact_table(fresh_out)
    keep = np.array([fnmatch.fnmatch(p, glob) for p, _ in rows])
    sub_rows = [r for r, k in zip(rows, keep, strict=True) if k]
    for i in (5, len(rows) // 2):
        t = search(shards, m[i], 10, path_glob=glob)
        got = _got(t)
        assert len(got) == 10 and all(fnmatch.fnmatch(p, glob) for p, _ in got)
        sims = dict(zip(sub_rows, m[keep] @ m[i], strict=True))  # exact search over the matching rows
        kth = sorted(sims.values(), reverse=True)[9]
        assert all(sims[g] >= kth - 1e-3 for g in got)


def test_files_gives_distinct_files_by_their_best_frame(fresh_out):
    _index(fresh_out, 1000)
    o = OutputDir(str(fresh_out))
    shards = open_shards(o, status(o).current)
    rows, m = exact_table(fresh_out)
    t = search(shards, m[7], 5, files=True)
    paths = t.column("path").to_pylist()
    assert len(paths) == len(set(paths)) == 5
    best = {}
    for (p, _), s in zip(rows, m @ m[7], strict=True):
        best[p] = max(best.get(p, -2.0), s)
    expected = sorted(best, key=lambda p: -best[p])[:5]
    assert paths == expected


def test_similar_uses_the_index_and_says_so(fresh_out):
    out = open_output(str(fresh_out))
    rows, m = exact_table(fresh_out)
    v = sim.QueryVector(m[100], "a frame")
    assert sim.similar(out, v, 10).schema.metadata[b"search"].startswith(b"exact: no index")
    _index(fresh_out, 1000)
    out = open_output(str(fresh_out))
    t = sim.similar(out, v, 10)
    n = len(out.frame_files)
    assert (
        t.schema.metadata[b"search"].decode().startswith("index: ")
        and f"over {n} parts" in t.schema.metadata[b"search"].decode()
    )
    exact = sim.similar(out, v, 10, exact=True)
    assert exact.schema.metadata[b"search"] == f"exact: {n} parts".encode()
    assert (
        t.column_names == exact.column_names == ["rank", "path", "frame", "start_s", "end_s", "similarity", "top_label"]
    )
    assert t.schema.remove_metadata().equals(exact.schema.remove_metadata())
    got = _got(t)
    assert _hits(rows, m, 100, got, 10) >= 9


def test_a_rewritten_parts_stale_shard_is_never_used(fresh_out):
    """run --mode resume rewrites a part in place: its shard is stale, the part is searched exactly."""
    _index(fresh_out, 100_000)  # one shard over every part
    o = OutputDir(str(fresh_out))
    rows, m = exact_table(fresh_out)
    dropped = rows[0][0]
    (files_part, frames_parts) = next((f, fr) for f, fr in o.committed_with_frames() if fr)
    paths_in_part = set()
    import pyarrow.parquet as pq

    for p in frames_parts:
        paths_in_part |= set(pq.read_table(p, columns=["path"]).column("path").to_pylist())
    dropped = sorted(paths_in_part)[0]
    assert o.drop_rows(files_part, frames_parts, [dropped])
    out = open_output(str(fresh_out))
    i = rows.index((dropped, 3))
    t = sim.similar(out, sim.QueryVector(m[i], "x"), 10)
    how = t.schema.metadata[b"search"].decode()
    assert how.startswith("exact: the index's 1 shards are stale"), how
    assert dropped not in t.column("path").to_pylist()


@pytest.mark.parametrize("precision", ["f16", "i8"])
def test_the_mapped_vectors_are_the_ones_usearch_returns(fresh_out, precision):
    """--path compares a few thousand rows exactly from the shard file itself: in key order, as USearch stores them."""
    _index(fresh_out, 1000, BuildParams(precision))
    o = OutputDir(str(fresh_out))
    for shard in open_shards(o, status(o).current):
        assert shard.vectors is not None and len(shard.vectors) == len(shard)
        keys = np.array([0, len(shard) // 2, len(shard) - 1], np.uint64)
        np.testing.assert_array_equal(np.stack(shard.index.get(keys)), shard.vectors[keys.astype(np.int64)])
