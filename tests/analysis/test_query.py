"""yamnet_beam.analysis (query, pool, similar) and the `query`/`pool` commands, on a real run over a scene."""

from __future__ import annotations

import json
import re
import shutil

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from yamnet_beam import framing
from yamnet_beam.analysis import output, query, similar
from yamnet_beam.analysis import pool as pool_mod
from yamnet_beam.cli import main
from yamnet_beam.table import schema
from yamnet_beam.table.output import glob_regex

SR = 16000
LEAD_S, GAP_S, TONE_S, TAIL_S = 3.0, 4.0, 5.0, 3.0
HOP_S = framing.HOP_SAMPLES / SR


def _frames_numpy(out_dir: str, path: str) -> tuple[np.ndarray, np.ndarray]:
    t = pq.read_table(f"{out_dir}/frames", columns=["path", "frame", "scores", "embedding"])
    t = t.filter(pa.compute.equal(t["path"], path)).sort_by("frame")
    scores = np.stack(t["scores"].to_numpy(zero_copy_only=False))
    emb = np.stack(t["embedding"].to_numpy(zero_copy_only=False))
    return scores, emb


# ---------------------------------------------------------------------------------------------- events


@pytest.mark.parametrize("kind, cls", [("speech", "Speech"), ("tone", "/m/02fs_r")])  # /m/02fs_r: "Beep, bleep"
def test_events_find_speech_and_tone_where_they_are(scene, out, kind, cls):
    true_start, true_end = scene[kind]
    ev = query.events(out, cls, threshold=0.5, min_duration=0.5)
    ev = ev.filter(pa.compute.equal(ev["path"], scene["scene"]))
    assert ev.num_rows >= 1, ev
    starts, ends = ev["start_s"].to_numpy(), ev["end_s"].to_numpy()
    assert abs(starts.min() - true_start) <= HOP_S
    assert abs(ends.max() - true_end) <= HOP_S
    # Nothing reported where the sound is not.
    assert starts.min() >= true_start - HOP_S and ends.max() <= true_end + HOP_S
    assert np.all(ends - starts >= 0.5)
    assert np.all(ev["peak_score"].to_numpy() >= 0.5)


def test_events_merge_consecutive_frames_like_a_numpy_scan(scene, out):
    scores, _ = _frames_numpy(scene["out"], scene["scene"])
    speech = scores[:, query.resolve_class(out.labels, "speech")]
    above = speech >= 0.3
    runs, i = [], 0
    while i < len(above):  # independent run-length scan
        if above[i]:
            j = i
            while j + 1 < len(above) and above[j + 1]:
                j += 1
            runs.append((i, j, speech[i : j + 1].max()))
            i = j + 1
        else:
            i += 1
    ev = query.events(out, "Speech", 0.3, path=scene["scene"])
    got = list(zip(ev["first_frame"].to_pylist(), ev["frames"].to_pylist(), ev["peak_score"].to_pylist(), strict=True))
    assert [(a, b - a + 1) for a, b, _ in runs] == [(g[0], g[1]) for g in got]
    np.testing.assert_allclose([r[2] for r in runs], [g[2] for g in got], rtol=1e-6)


@pytest.mark.parametrize("gap_frames", [0, 1, 2, 5])
def test_events_max_gap_bridges_dips_like_a_numpy_scan(scene, out, gap_frames):
    scores, _ = _frames_numpy(scene["out"], scene["scene"])
    above = np.flatnonzero(scores[:, query.resolve_class(out.labels, "speech")] >= 0.3)
    runs = []  # independent scan: start a new run when more than gap_frames frames are missing
    for f in above:
        if runs and f - runs[-1][1] <= 1 + gap_frames:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    ev = query.events(out, "Speech", 0.3, path=scene["scene"], max_gap=gap_frames * out.hop_s)
    assert [
        [a, a + n - 1] for a, n in zip(ev["first_frame"].to_pylist(), ev["frames"].to_pylist(), strict=True)
    ] == runs


def test_events_bad_class_and_threshold_are_clear(out):
    with pytest.raises(output.QueryError, match="did you mean 'Speech'"):
        query.events(out, "speach", 0.5)
    with pytest.raises(output.QueryError, match="threshold"):
        query.events(out, "Speech", 2.0)


# ---------------------------------------------------------------------------------------------- top / pool


def test_top_agrees_with_numpy(scene, out):
    k = 4
    top = query.top_classes(out, k)
    names = out.labels.names
    t = pq.read_table(f"{scene['out']}/files", columns=["path", "frames"])
    paths = sorted(p for p, n in zip(t["path"].to_pylist(), t["frames"].to_pylist(), strict=True) if n)
    assert sorted(set(top["path"].to_pylist())) == paths
    for path in paths:
        scores, _ = _frames_numpy(scene["out"], path)
        mean, mx = scores.mean(axis=0), scores.max(axis=0)
        rows = top.filter(pa.compute.equal(top["path"], path)).to_pylist()
        assert [r["rank"] for r in rows] == list(range(1, k + 1))
        np.testing.assert_allclose([r["mean"] for r in rows], np.sort(mean)[::-1][:k], rtol=1e-5)
        np.testing.assert_allclose([r["max"] for r in rows], np.sort(mx)[::-1][:k], rtol=1e-6)
        assert [r["by_mean"] for r in rows][0] == names[int(mean.argmax())]


def test_top_path_glob(scene, out):
    top = query.top_classes(out, 2, path_glob="*.ogg")
    assert set(top["path"].to_pylist()) == {str(scene["audio"] / "noise.ogg")}
    with pytest.raises(output.QueryError, match="no frames match"):
        query.top_classes(out, 2, path_glob="*.nothing")


def test_pool_equals_numpy_mean_and_max(scene, out, tmp_path):
    dest = pool_mod.pool(out, str(tmp_path / "clips"))
    clips = pq.read_table(dest)
    assert clips.schema.remove_metadata() == schema.clips_schema().remove_metadata()
    assert schema.read_metadata(clips.schema)["model_sha256"] == out.manifest["model_sha256"]
    files = pq.read_table(f"{scene['out']}/files").to_pylist()
    with_frames = {r["path"]: r for r in files if r["frames"]}
    assert sorted(clips["path"].to_pylist()) == sorted(with_frames)
    for row in clips.to_pylist():
        scores, emb = _frames_numpy(scene["out"], row["path"])
        assert row["frames"] == len(scores) == with_frames[row["path"]]["frames"]
        assert row["duration_s"] == with_frames[row["path"]]["duration_s"]
        np.testing.assert_allclose(row["mean_scores"], scores.mean(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(row["max_scores"], scores.max(axis=0))
        np.testing.assert_allclose(row["mean_embedding"], emb.mean(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-6)
        assert row["top_label"] == out.labels.names[int(np.argmax(row["mean_scores"]))]


def test_pool_streams_across_small_batches(scene, out):
    """Files split over many batches (and batches holding several files) pool the same."""
    whole = {t["path"]: t for t in pa.concat_tables(pool_mod.iter_pooled(out)).to_pylist()}
    small = pa.concat_tables(pool_mod.iter_pooled(out, chunk_files=1, batch_rows=7)).to_pylist()
    assert len(small) == len(whole)
    for row in small:
        np.testing.assert_allclose(row["mean_scores"], whole[row["path"]]["mean_scores"], rtol=1e-6)
        assert row["max_scores"] == whole[row["path"]]["max_scores"]


# ---------------------------------------------------------------------------------------------- similar


def test_similar_to_a_copy_embedded_on_the_fly_finds_the_same_frame(scene, out, tmp_path):
    copy = tmp_path / "elsewhere.wav"  # not in the output: embedded now with the run's model
    shutil.copy(scene["scene"], copy)
    frame = 30  # inside the tone
    seconds = frame * HOP_S + framing.WINDOW_SAMPLES / SR / 2
    vec = similar.file_vector(out, *similar.parse_file_ref(f"{copy}:{seconds}"))
    assert "embedded now" in vec.source
    res = similar.similar(out, vec, k=5)
    assert res["path"][0].as_py() == scene["scene"]
    _, emb = _frames_numpy(scene["out"], scene["scene"])
    np.testing.assert_array_equal(vec.vector, emb[frame])  # same model, same framing: bit for bit
    whole = similar.file_vector(out, *similar.parse_file_ref(str(copy)))  # all its frames, batched now
    stored = similar.file_vector(out, *similar.parse_file_ref(scene["scene"]))  # read from the output
    assert "embedded now" in whole.source and "embedded now" not in stored.source
    np.testing.assert_array_equal(whole.vector, stored.vector)
    assert res["similarity"][0].as_py() == pytest.approx(1.0, abs=1e-5)
    sims = res["similarity"].to_numpy()
    assert np.all(np.diff(sims) <= 0)


def test_similar_speech_query_ranks_a_scene_speech_frame_first(scene, out, fixtures_dir):
    vec = similar.file_vector(out, *similar.parse_file_ref(f"{fixtures_dir / 'speech_16k_float32.wav'}:2.0"))
    top = similar.similar(out, vec, k=3).to_pylist()[0]
    assert top["path"] == scene["scene"]
    s0, s1 = scene["speech"]
    assert s0 - HOP_S <= top["start_s"] and top["end_s"] <= s1 + HOP_S + framing.WINDOW_SAMPLES / SR


def test_similar_matches_brute_force_numpy_and_duckdb(scene, out):
    _, emb = _frames_numpy(scene["out"], scene["scene"])
    vec = similar.frame_vector(out, scene["scene"], 8)
    res = similar.similar(out, vec, k=5)
    t = pq.read_table(f"{scene['out']}/frames", columns=["path", "frame", "embedding"])
    allemb = np.stack(t["embedding"].to_numpy(zero_copy_only=False))
    sims = allemb @ emb[8] / (np.linalg.norm(allemb, axis=1) * np.linalg.norm(emb[8]))
    np.testing.assert_allclose(res["similarity"].to_numpy(), np.sort(sims)[::-1][:5], rtol=1e-5)
    duck = duckdb.sql(
        "SELECT array_cosine_similarity(embedding::FLOAT[1024], $q::FLOAT[1024]) s "
        f"FROM '{scene['out']}/frames/*.parquet' ORDER BY s DESC LIMIT 5",
        params={"q": emb[8].tolist()},
    ).fetchall()
    np.testing.assert_allclose(res["similarity"].to_numpy(), [r[0] for r in duck], rtol=1e-5)


def test_similar_cache_gives_the_parquet_scan_results_and_follows_changes(scene, tmp_path):
    src = output.open_output(scene["out"])
    vec = similar.frame_vector(src, scene["scene"], 20)
    direct = similar.similar(src, vec, k=8, cache=False)
    cache = tmp_path / "cache"
    assert similar.build_similarity_cache(src, str(cache)) == len(src.frame_files)
    assert similar.build_similarity_cache(src, str(cache)) == 0  # fresh: nothing decoded again
    cached = similar.similar(src, vec, k=8, cache_dir=str(cache))
    assert cached.select(["path", "frame"]).to_pylist() == direct.select(["path", "frame"]).to_pylist()
    np.testing.assert_allclose(cached["similarity"].to_numpy(), direct["similarity"].to_numpy(), rtol=1e-5)
    files_direct = similar.similar(src, vec, k=3, files=True, cache=False)
    files_cached = similar.similar(src, vec, k=3, files=True, cache_dir=str(cache))
    assert files_cached["path"].to_pylist() == files_direct["path"].to_pylist()
    glob = similar.similar(src, vec, k=3, path_glob="*.ogg", cache_dir=str(cache))
    assert set(glob["path"].to_pylist()) == {str(scene["audio"] / "noise.ogg")}
    # A rewritten part (as --mode resume does) gets a new cache entry instead of stale vectors.
    copy = tmp_path / "out"
    shutil.copytree(scene["out"], copy, ignore=shutil.ignore_patterns("_similar_cache"))
    moved = output.open_output(str(copy))
    part = next(
        f for f in moved.frame_files if scene["scene"] in pq.read_table(f, columns=["path"])["path"].to_pylist()
    )
    t = pq.read_table(part)
    pq.write_table(t.filter(pa.compute.not_equal(t["path"], scene["scene"])), part)
    assert similar.build_similarity_cache(moved, str(cache)) == 1
    assert scene["scene"] not in similar.similar(moved, vec, k=50, cache_dir=str(cache))["path"].to_pylist()


def test_similar_files_gives_one_row_per_file_best_frame(scene, out):
    vec = similar.frame_vector(out, str(scene["audio"] / "noise.ogg"), 0)
    res = similar.similar(out, vec, k=10, files=True)
    paths = res["path"].to_pylist()
    assert len(paths) == len(set(paths)) == 3  # three inputs have frames
    assert paths[0] == str(scene["audio"] / "noise.ogg")


def test_file_vector_of_a_stored_file_uses_its_frames(scene, out):
    _, emb = _frames_numpy(scene["out"], scene["scene"])
    mean = similar.file_vector(out, scene["scene"])
    np.testing.assert_allclose(mean.vector, emb.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert f"mean of its {len(emb)} frames" in mean.source
    at = similar.file_vector(out, scene["scene"], 14.0)
    frame = similar.frame_at(14.0, len(emb), out.hop_samples)
    np.testing.assert_array_equal(at.vector, emb[frame])
    assert at.source == f"{scene['scene']} frame {frame}"
    late = similar.file_vector(out, scene["scene"], 1e6)  # clamped to the last stored frame
    np.testing.assert_array_equal(late.vector, emb[-1])
    # One-row look-ups leave the connection usable for Arrow queries (DuckDB 2.x refuses a half-read result).
    assert query.events(out, "Speech", 0.5, path=scene["scene"]).num_rows >= 1


def test_similar_refs_and_errors(scene, out):
    assert similar.parse_frame_ref("gs://b/a:b.wav:12") == ("gs://b/a:b.wav", 12)
    assert similar.parse_file_ref("x.wav:1.5") == ("x.wav", 1.5)
    with pytest.raises(output.QueryError, match="PATH:INDEX"):
        similar.parse_frame_ref("no-index")
    with pytest.raises(output.QueryError, match="no frame 9999"):
        similar.frame_vector(out, scene["scene"], 9999)
    with pytest.raises(output.QueryError, match="cannot be decoded"):
        similar.file_vector(out, str(scene["audio"] / "broken.wav"))


def test_frame_at_picks_the_nearest_window_centre():
    assert similar.frame_at(0.0, 10, framing.HOP_SAMPLES) == 0
    assert similar.frame_at(0.4875 + 3 * 0.48, 10, framing.HOP_SAMPLES) == 3
    assert similar.frame_at(1e6, 10, framing.HOP_SAMPLES) == 9


def test_nearest_frames_per_batch_topk_equals_global_sort():
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((500, 8)).astype(np.float32)
    q = rng.standard_normal(8).astype(np.float32)
    table = pa.table(
        {
            "path": [f"f{i % 7}" for i in range(500)],
            "frame": np.arange(500, dtype=np.int32),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), 8),
        }
    )
    res = similar.nearest_frames(table.to_batches(max_chunksize=33), q, k=6)
    expect = np.argsort(-(emb @ q) / np.linalg.norm(emb, axis=1))[:6]
    assert res["frame"].to_pylist() == expect.tolist()
    per_file = similar.nearest_frames(table.to_batches(max_chunksize=33), q, k=10, per_file=True)
    assert sorted(per_file["path"].to_pylist()) == [f"f{i}" for i in range(7)]
    sims = (emb @ q) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(q))
    best = {f"f{i}": int(np.arange(500)[i::7][np.argmax(sims[i::7])]) for i in range(7)}  # each file's best frame
    assert dict(zip(per_file["path"].to_pylist(), per_file["frame"].to_pylist(), strict=True)) == best
    assert per_file["similarity"].to_pylist() == sorted(per_file["similarity"].to_pylist(), reverse=True)


# ---------------------------------------------------------------------------------------------- summary / output


def test_summary_counts(scene, out):
    rows = {(r["section"], r["item"]): r["value"] for r in query.summary(out).to_pylist()}
    files = pq.read_table(f"{scene['out']}/files").to_pylist()
    assert rows[("files", "matched")] == len(files) == 4
    assert rows[("files", "ok")] == 3 and rows[("files", "error")] == 1
    assert rows[("errors", "unsupported_format")] == 1
    assert rows[("audio", "frames")] == sum(f["frames"] for f in files)
    assert rows[("audio", "hours")] == pytest.approx(sum(f["duration_s"] or 0 for f in files) / 3600)
    labels = pq.read_table(f"{scene['out']}/frames", columns=["top_label"])["top_label"].to_pylist()
    most = max(set(labels), key=labels.count)
    assert rows[("top_label (frames)", most)] == labels.count(most)


def test_outputs_without_files_or_frames_tables_still_answer(scene, tmp_path):
    """No files/ (a partial copy): files is derived from frames. No frames/ (every file failed): summary still works."""
    no_files = tmp_path / "no_files"
    shutil.copytree(scene["out"], no_files, ignore=shutil.ignore_patterns("files", "_similar_cache"))
    o = output.open_output(str(no_files))
    rows = {(r["section"], r["item"]): r["value"] for r in query.summary(o).to_pylist()}
    frames = pq.read_table(f"{scene['out']}/frames", columns=["path"])
    assert rows[("files", "matched")] == rows[("files", "ok")] == len(set(frames["path"].to_pylist())) == 3
    assert rows[("audio", "frames")] == frames.num_rows
    assert set(query.top_classes(o, 1)["path"].to_pylist()) == set(frames["path"].to_pylist())

    no_frames = tmp_path / "no_frames"
    shutil.copytree(scene["out"], no_frames, ignore=shutil.ignore_patterns("frames", "_similar_cache"))
    rows = {
        (r["section"], r["item"]): r["value"] for r in query.summary(output.open_output(str(no_frames))).to_pylist()
    }
    assert rows[("files", "matched")] == 4 and rows[("audio", "frames")] == 0


def test_open_output_errors(tmp_path):
    with pytest.raises(output.QueryError, match="not a directory"):
        output.open_output(str(tmp_path / "missing"))
    with pytest.raises(output.QueryError, match="no frames/ or files/"):
        output.open_output(str(tmp_path))


def test_glob_regex_matches_like_duckdb():
    cases = ["/a/b.wav", "/a/b.flac", "x[1].wav", "/a/c/d.WAV"]
    for glob in ["*.wav", "/a/*", "/a/?.wav", "*[1]*", "/a/[bc]*"]:
        sql = "SELECT p FROM unnest($c) t(p) WHERE p GLOB $g"
        duck = [r[0] for r in duckdb.execute(sql, {"c": cases, "g": glob}).fetchall()]
        ours = [c for c in cases if re.match(glob_regex(glob), c)]
        assert ours == duck, glob


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_query_formats(scene, capsys, tmp_path):
    assert main(["query", scene["out"], "events", "--class", "Speech", "--threshold", "0.5", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["class"] == "Speech" and r["path"] == scene["scene"] for r in rows)

    assert main(["query", scene["out"], "top", "--top", "2", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "path,rank,by_mean,mean,by_max,max" and len(lines) == 1 + 2 * 3

    assert main(["query", scene["out"], "summary"]) == 0
    text = capsys.readouterr().out
    assert "unsupported_format" in text and "(" in text.splitlines()[-1]

    assert main(["query", scene["out"], "summary", "--format", "json"]) == 0
    values = {(r["section"], r["item"]): r["value"] for r in json.loads(capsys.readouterr().out)}
    assert values[("files", "matched")] == 4 and type(values[("files", "matched")]) is int  # a count, not 4.0
    assert type(values[("audio", "hours")]) is float

    dest = tmp_path / "sim.parquet"
    argv = ["query", scene["out"], "similar", "--frame", f"{scene['scene']}:30", "--top", "3", "--format", "parquet"]
    assert main([*argv, "-o", str(dest)]) == 0
    assert pq.read_table(dest).column_names == ["rank", "path", "frame", "start_s", "end_s", "similarity", "top_label"]

    argv = ["query", scene["out"], "similar", "--to", f"{scene['scene']}:14", "--files", "--top", "2", "--no_cache"]
    assert main(argv) == 0
    assert "query:" in capsys.readouterr().out


def test_cli_pool_and_errors(scene, capsys, tmp_path):
    assert main(["pool", scene["out"], "-o", str(tmp_path / "c")]) == 0
    assert pq.read_table(tmp_path / "c").num_rows == 3
    capsys.readouterr()
    assert main(["query", scene["out"], "events", "--class", "nothing like it", "--threshold", "0.5"]) == 2
    assert "unknown class" in capsys.readouterr().err
    assert main(["query", scene["out"], "summary", "--format", "parquet"]) == 2
    assert "-o FILE" in capsys.readouterr().err
    assert main(["query", str(tmp_path / "nope"), "top"]) == 2


def test_events_max_gap_merges_the_speech_dip(scene, out):
    """At threshold 0.5 the fixture's speech has a dip between words: bridging it gives one event."""
    split = query.events(out, "Speech", 0.5, path=scene["scene"])
    merged = query.events(out, "Speech", 0.5, path=scene["scene"], max_gap=1.0)
    assert split.num_rows >= 2 and merged.num_rows == 1
    assert merged["start_s"][0].as_py() == split["start_s"][0].as_py()
    assert merged["end_s"][0].as_py() == split["end_s"][-1].as_py()
