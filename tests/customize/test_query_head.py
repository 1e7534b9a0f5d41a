"""query top/events --head: a custom class, its calibrated threshold by default, from frames/ or heads/."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from yamnet_beam.analysis import query as q
from yamnet_beam.analysis.output import QueryError, open_output
from yamnet_beam.cli import main


def _head_frames(out):
    t = pq.read_table(out / "frames", columns=["path", "frame", "head_scores"])
    return t.sort_by([("path", "ascending"), ("frame", "ascending")])


def test_events_use_the_calibrated_threshold(head_out, head):
    k = head.classes.index("pulses")
    ev = q.events(open_output(str(head_out)), "Pulses", None, head=head)
    t = _head_frames(head_out)
    s = np.stack(t.column("head_scores").to_numpy(zero_copy_only=False))[:, k]
    hits = s >= np.float32(head.thresholds[k])
    assert set(ev.column("class").to_pylist()) == {"pulses"}
    assert sum(ev.column("frames").to_pylist()) >= hits.sum() > 0  # runs of hits (no gaps merged) cover them
    hit_paths = {p for p, h in zip(t.column("path").to_pylist(), hits, strict=True) if h}
    assert set(ev.column("path").to_pylist()) == hit_paths


def test_top_over_the_head_equals_mean_head_scores(head_out, head):
    top = q.top_classes(open_output(str(head_out)), 1, head=head)
    t = _head_frames(head_out)
    paths = np.asarray(t.column("path").to_pylist())
    s = np.stack(t.column("head_scores").to_numpy(zero_copy_only=False))
    for p, label, mean in zip(*(top.column(c).to_pylist() for c in ("path", "by_mean", "mean")), strict=True):
        m = s[paths == p].astype(np.float64).mean(axis=0)
        assert label == head.classes[int(m.argmax())] and mean == pytest.approx(m.max(), abs=1e-6)


def test_applied_table_answers_the_same(plain_out, head_out, head_dir, head, capsys):
    """After `apply`, the plain output answers --head questions like the `run --head` one."""
    assert main(["apply", str(plain_out), "--head", str(head_dir), "--mode", "overwrite"]) == 0
    a = q.events(open_output(str(plain_out)), "tone", None, head=head)
    b = q.events(open_output(str(head_out)), "tone", None, head=head)
    assert a.equals(b) and a.num_rows > 0
    capsys.readouterr()
    assert main(["query", str(plain_out), "events", "--class", "tone", "--head", str(head_dir)]) == 0
    assert "tone" in capsys.readouterr().out


def test_unknown_class_or_missing_scores_say_what_to_do(head_out, bare_out, head):
    with pytest.raises(QueryError, match="its classes are"):
        q.events(open_output(str(head_out)), "Speech!", None, head=head)
    with pytest.raises(QueryError, match="--threshold is required"):
        q.events(open_output(str(head_out)), "Speech", None)
    with pytest.raises(QueryError, match="holds no scores of the head 'sounds'.*yamnet-beam apply"):
        q.top_classes(open_output(str(bare_out)), 1, head=head)


def test_an_applied_table_missing_a_frames_part_is_refused(bare_out, head_dir, head):
    """After a resume added frames parts, the applied table would silently leave their files out."""
    assert main(["apply", str(bare_out), "--head", str(head_dir), "--mode", "overwrite"]) == 0
    parts = sorted((bare_out / "heads" / head.name).glob("part-*.parquet"))
    assert [p.name for p in parts] == sorted(p.name for p in (bare_out / "frames").glob("part-*.parquet"))
    parts[-1].unlink()
    with pytest.raises(QueryError, match=f"{parts[-1].name} is not scored.*apply .* again"):
        q.events(open_output(str(bare_out)), "tone", None, head=head)


def test_apply_passes_beam_options_to_its_pipeline(bare_out, head_dir):
    with pytest.raises(ValueError, match="NoSuchRunner"):
        main(["apply", str(bare_out), "--head", str(head_dir), "--runner", "NoSuchRunner", "--mode", "overwrite"])


def test_pool_adds_mean_head_scores(head_out, tmp_path):
    from yamnet_beam.analysis.pool import pool

    clips = pq.read_table(pool(open_output(str(head_out)), str(tmp_path / "clips")))
    t = _head_frames(head_out)
    paths = np.asarray(t.column("path").to_pylist())
    s = np.stack(t.column("head_scores").to_numpy(zero_copy_only=False)).astype(np.float64)
    for p, m in zip(clips.column("path").to_pylist(), clips.column("mean_head_scores").to_pylist(), strict=True):
        np.testing.assert_allclose(m, s[paths == p].mean(axis=0), atol=1e-6)
