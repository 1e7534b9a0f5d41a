"""The loop without the web: training on the labels so far and re-ranking every frame with the saved head."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.customize.test_train import frames_by_path
from yamnet_beam.analysis.output import QueryError
from yamnet_beam.cli import main
from yamnet_beam.explore.session import Explorer
from yamnet_beam.model.head import load_head


def _train(ex: Explorer, mode: str) -> dict:
    ex.start_training("beep", mode)
    end = time.monotonic() + 300
    while ex.job["state"] == "running" and time.monotonic() < end:
        time.sleep(0.05)
    assert ex.job["state"] == "done", ex.job
    return ex.job


@pytest.fixture
def labelled(fresh_out, synth):
    ex = Explorer(str(fresh_out), preload=False)
    page = ex.search_class("Beep, bleep")
    for it in page["items"]:
        value = "positive" if synth["truth"][it["path"]] == "target" else "negative"
        ex.add_label(it["path"], it["start_s"], it["end_s"], "beep", value, page["query"])
    return ex, page


@pytest.mark.parametrize("mode", ["top", "margin"])
def test_rerank_orders_unlabelled_frames_by_the_saved_heads_scores(labelled, fresh_out, synth, mode):
    ex, page = labelled
    job = _train(ex, mode)
    head = load_head(job["head_dir"])  # saved like any train head
    assert head.classes == ["beep", "not beep"] and head.hyperparameters["labels"] == "windows"
    frames = frames_by_path(fresh_out)
    ranked = ex.reranked(n=1000)["items"]
    labelled_windows = {(x["path"], x["frame"]) for x in page["items"]}
    assert not {(x["path"], x["frame"]) for x in ranked} & labelled_windows
    assert len(ranked) == sum(len(v) for v in frames.values()) - len(labelled_windows)
    expected = np.array([head.scores(frames[x["path"]][x["frame"]][None])[0, 0] for x in ranked])
    np.testing.assert_allclose([x["score"] for x in ranked], expected, atol=1e-5)
    t = job["threshold"]
    key = -expected if mode == "top" else np.abs(expected - t)
    assert np.all(np.diff(key) >= -1e-5)
    if mode == "top":
        assert [synth["truth"][x["path"]] for x in ranked[:10]] == ["target"] * 10


def test_the_head_trained_from_memory_equals_train_on_the_command_line(labelled, tmp_path):
    ex, _ = labelled
    job = _train(ex, "top")
    snapshot = job["head_dir"] + ".labels.csv"  # the labels it was trained on, kept beside it
    assert main(["train", str(ex.out.root), "--labels", snapshot, "-o", str(tmp_path / "cli")]) == 0
    mine, cli = load_head(job["head_dir"]), load_head(str(tmp_path / "cli"))
    assert mine.classes == cli.classes and mine.metrics["clip"] == cli.metrics["clip"]
    for (w1, b1), (w2, b2) in zip(mine.layers, cli.layers, strict=True):
        np.testing.assert_allclose(w1, w2, atol=1e-6)
        np.testing.assert_allclose(b1, b2, atol=1e-6)


def test_training_without_negatives_is_reported_not_raised(fresh_out, synth):
    ex = Explorer(str(fresh_out), preload=False)
    path = next(p for p, k in synth["truth"].items() if k == "target")
    ex.add_label(path, 0.0, 0.975, "beep", "positive")
    ex.start_training("beep")
    while ex.job["state"] == "running":
        time.sleep(0.05)
    assert ex.job["state"] == "error" and "negatives train 'not <class>'" in ex.job["error"]
    with pytest.raises(QueryError, match="train a head first"):
        ex.reranked()


def test_with_a_head_its_classes_are_searched_by_its_applied_scores(labelled, fresh_out, synth):
    from yamnet_beam.job.apply import apply_head

    ex, _ = labelled
    head_dir = _train(ex, "top")["head_dir"]
    apply_head(str(fresh_out), head_dir)
    with_head = Explorer(str(fresh_out), head_dir=head_dir, preload=False)
    assert with_head.classes()["head"] == ["beep", "not beep"]
    page = with_head.search_class("beep")
    head = load_head(head_dir)
    frames = frames_by_path(fresh_out)
    scored = [(float(head.scores(e[i][None])[0, 0]), p, i) for p, e in frames.items() for i in range(len(e))]
    scored.sort(key=lambda r: (-r[0], r[1], r[2]))
    assert [(x["path"], x["frame"]) for x in page["items"]] == [(p, i) for _, p, i in scored[:20]]
    assert page["query"] == "class beep"


def test_an_output_too_big_for_memory_stays_on_sql_and_says_why_training_cannot_run(fresh_out, monkeypatch):
    """Class search works without the frame matrix; training, which needs it, fails with the way out."""
    from yamnet_beam.explore import session

    frames = sum(len(v) for v in frames_by_path(fresh_out).values())
    # Memory for just under the matrix's whole size: its half (the budget) is too small.
    monkeypatch.setattr(session, "available_memory", lambda: frames * session.MATRIX_BYTES_PER_FRAME)
    ex = Explorer(str(fresh_out))  # preloading on, as the command starts it
    assert ex.matrix_bytes == frames * session.MATRIX_BYTES_PER_FRAME
    page = ex.search_class("Beep, bleep")
    assert page["items"] and ex._matrix is None  # answered by SQL; nothing loaded in the background
    ex.add_label(page["items"][0]["path"], page["items"][0]["start_s"], page["items"][0]["end_s"], "beep", "positive")
    ex.start_training("beep")
    end = time.monotonic() + 60
    while ex.job["state"] == "running" and time.monotonic() < end:
        time.sleep(0.05)
    assert ex.job["state"] == "error" and "yamnet-beam train" in ex.job["error"], ex.job
    with pytest.raises(QueryError, match="hold every frame in memory"):
        ex.matrix()


def test_close_stops_the_background_load_and_waits_for_it(fresh_out):
    """Ctrl-C must not leave a thread inside Arrow while the interpreter exits (the process would abort)."""
    from yamnet_beam.explore.session import Closing

    ex = Explorer(str(fresh_out))  # starts loading the frames in the background
    ex.close()
    assert ex._threads and not any(t.is_alive() for t in ex._threads)
    stopped = Explorer(str(fresh_out), preload=False)
    stopped._stop.set()
    with pytest.raises(Closing):
        stopped.matrix()  # a load asked for after close ends at its first batch
