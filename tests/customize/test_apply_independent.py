"""apply against an independent expectation, and killed mid-commit.

The expected head scores are computed here with numpy alone, from the stored embeddings (read with
pyarrow) and the head's own files (``head.json`` and ``weights.npz``, read with json/np.load), not
through the package's ``Head``: ``x @ W + b``, ReLU between layers, softmax or sigmoid. The labels are
every class whose stored score is at least its threshold (both as float32, as stored).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.support.faultfs import Fault, faulty_filesystem, url
from yamnet_beam.analysis import query as q
from yamnet_beam.analysis.output import QueryError, open_output
from yamnet_beam.cli import main

KEYS = [("path", "ascending"), ("frame", "ascending")]


def _numpy_head(head_dir: Path):
    doc = json.loads((head_dir / "head.json").read_text())
    with np.load(head_dir / doc["weights_file"], allow_pickle=False) as npz:
        layers = [(npz[f"w{i}"].astype(np.float64), npz[f"b{i}"].astype(np.float64)) for i in range(len(doc["layers"]))]
    return doc, layers


def _expected_scores(head_dir: Path, embeddings: np.ndarray) -> np.ndarray:
    doc, layers = _numpy_head(head_dir)
    x = embeddings.astype(np.float64)
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0)
    if doc["activation"] == "softmax":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return 1 / (1 + np.exp(-x))


def _committed_frames(out: Path):
    markers = {p.name for p in (out / "files").glob("part-*.parquet")}
    parts = [
        p for p in sorted((out / "frames").glob("part-*.parquet")) if f"{p.name[:-8].split('-s')[0]}.parquet" in markers
    ]
    return pq.read_table(parts, columns=["path", "frame", "start_s", "end_s", "embedding"]).sort_by(KEYS)


def _heads_parts(d: Path) -> list[Path]:
    return sorted(d.glob("part-*.parquet"))


def _assert_applied_independently(out: Path, head_dir: Path) -> None:
    doc, _ = _numpy_head(head_dir)
    frames = _committed_frames(out)
    applied = pq.read_table(_heads_parts(out / "heads" / doc["name"])).sort_by(KEYS)
    assert applied.num_rows == frames.num_rows > 100
    for c in ["path", "frame", "start_s", "end_s"]:
        assert applied.column(c).equals(frames.column(c)), c
    emb = frames.column("embedding").combine_chunks()
    emb = emb.flatten().to_numpy(zero_copy_only=False).reshape(len(emb), -1)
    expected = _expected_scores(head_dir, emb)
    scores = applied.column("head_scores").combine_chunks()
    scores = scores.flatten().to_numpy().reshape(len(scores), -1)
    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-7)
    classes = np.asarray(doc["classes"], dtype=object)
    top = scores.argmax(axis=1)
    clear = np.sort(expected, axis=1)[:, -1] - np.sort(expected, axis=1)[:, -2] > 1e-6  # not a tie in the last bit
    assert (expected.argmax(axis=1) == top)[clear].all()
    assert applied.column("head_top_label").to_pylist() == classes[top].tolist()
    assert applied.column("head_top_score").to_numpy().tolist() == scores[np.arange(len(top)), top].tolist()
    thresholds = np.asarray(doc["thresholds"], np.float32)
    labels = [classes[row >= thresholds].tolist() for row in scores]
    assert applied.column("head_labels").to_pylist() == labels
    assert any(labels) and not all(labels)  # the thresholds decide something here


def test_apply_equals_numpy_forward_pass(bare_out, head_dir):
    assert main(["apply", str(bare_out), "--head", str(head_dir)]) == 0
    _assert_applied_independently(bare_out, head_dir)


def test_apply_mlp_equals_numpy_forward_pass(bare_out, mlp_head_dir):
    assert len(_numpy_head(mlp_head_dir)[1]) == 2  # a hidden layer: the ReLU is exercised
    assert main(["apply", str(bare_out), "--head", str(mlp_head_dir)]) == 0
    _assert_applied_independently(bare_out, mlp_head_dir)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault("mv", 2, "*/heads/*/part-*"), id="killed-at-second-rename"),
        pytest.param(Fault("write", 1, "*/heads/*/_tmp-*"), id="killed-writing-first-part"),
        pytest.param(Fault("mv", 1, "*/heads/*/part-*", action="fail"), id="failed-first-rename"),
    ],
)
def test_apply_killed_mid_commit_shows_no_partial_part_and_reapply_completes(bare_out, head_dir, head, fault):
    name = json.loads((head_dir / "head.json").read_text())["name"]
    dest = bare_out / "heads" / name
    frames_parts = len(list((bare_out / "files").glob("part-*.parquet")))
    assert frames_parts >= 3
    with faulty_filesystem(fault) as state:
        with pytest.raises(Exception):  # noqa: B017 - Beam wraps the injected error
            main(["apply", url(bare_out), "--head", str(head_dir)])
        assert state.fired is not None
    visible = _heads_parts(dest)
    assert len(visible) < frames_parts  # really interrupted
    for p in visible:  # each part a reader can see is whole: as many rows as its frames part
        assert pq.read_metadata(p).num_rows == pq.read_metadata(bare_out / "frames" / p.name).num_rows
    # A reader of the head's scores is told to apply again rather than given part of them.
    with pytest.raises(QueryError, match="apply"):
        q.top_classes(open_output(str(bare_out)), 1, head=head)
    # The interrupted application is replaced, as the interruption's message says: --mode overwrite.
    assert main(["apply", str(bare_out), "--head", str(head_dir), "--mode", "overwrite"]) == 0
    assert not [p.name for p in dest.iterdir() if not p.name.startswith("part-")]  # no temp file left
    _assert_applied_independently(bare_out, head_dir)
