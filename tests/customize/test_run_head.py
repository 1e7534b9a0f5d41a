"""run --head: every frame's head columns equal the head's weights applied to its stored embedding."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from yamnet_beam.job.pipeline import run
from yamnet_beam.model.head import HeadError
from yamnet_beam.table import schema


def _frames(out):
    t = pq.read_table(out / "frames")
    return t.sort_by([("path", "ascending"), ("frame", "ascending")])


def test_head_scores_equal_embedding_times_weights_through_softmax(head_out, head_dir, head):
    t = _frames(head_out)
    emb = np.stack(t.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float64)
    with np.load(head_dir / "weights.npz", allow_pickle=False) as npz:
        w, b = npz["w0"].astype(np.float64), npz["b0"].astype(np.float64)
    z = emb @ w + b
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    got = np.stack(t.column("head_scores").to_numpy(zero_copy_only=False))
    assert t.schema.field("head_scores").type == schema.head_fields(len(head.classes))[0].type
    np.testing.assert_allclose(got, expected, atol=1e-6)
    top = got.argmax(axis=1)
    assert t.column("head_top_label").to_pylist() == [head.classes[i] for i in top]
    np.testing.assert_array_equal(t.column("head_top_score").to_numpy(), got[np.arange(len(got)), top])
    thresholds = np.float32(head.thresholds)
    assert t.column("head_labels").to_pylist() == [
        [c for c, s, th in zip(head.classes, row, thresholds, strict=True) if s >= th] for row in got
    ]
    assert t.num_rows > 100


def test_head_goes_into_fingerprint_and_manifest(head_out, plain_out, head):
    manifest = json.loads((head_out / "manifest.json").read_text())
    plain = json.loads((plain_out / "manifest.json").read_text())
    assert manifest["head_sha256"] == head.sha256 and manifest["head_classes"] == head.classes
    assert manifest["fingerprint"] != plain["fingerprint"]
    frames_meta = schema.read_metadata(pq.read_schema(next((head_out / "frames").glob("*.parquet"))))
    assert frames_meta["head_sha256"] == head.sha256
    # the YAMNet columns are untouched by the head
    a, b = _frames(head_out), _frames(plain_out)
    assert a.select(["path", "frame", "scores", "embedding"]).equals(b.select(["path", "frame", "scores", "embedding"]))


def test_a_head_of_another_model_is_refused_before_any_work(foreign_head_dir, labelled, tmp_path, model_args):
    out = tmp_path / "out"
    with pytest.raises(HeadError, match="trained on embeddings of the model with SHA-256 000000000000"):
        run(["--input", str(labelled["audio"]), "--output", str(out), "--head", str(foreign_head_dir), *model_args])
    assert not out.exists()
