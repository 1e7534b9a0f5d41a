"""``--embedding_dtype float16`` with the real model, through every reader of embeddings: similar, pool,
train and apply. Expectations come from the float32 run of the same audio, cast with numpy."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.customize.test_apply_independent import _assert_applied_independently
from yamnet_beam.analysis.output import open_output
from yamnet_beam.analysis.pool import pool
from yamnet_beam.analysis.similar import frame_vector, similar
from yamnet_beam.cli import main
from yamnet_beam.customize.train import train
from yamnet_beam.job.pipeline import run

from .conftest import HOP

KEYS = [("path", "ascending"), ("frame", "ascending")]


@pytest.fixture(scope="module")
def f16_out(labelled, tmp_path_factory, model_args):
    out = tmp_path_factory.mktemp("f16") / "out"
    run(
        [
            "--input",
            str(labelled["audio"]),
            "--output",
            str(out),
            "--hop_seconds",
            HOP,
            "--embedding_dtype",
            "float16",
            *model_args,
        ]
    )
    return out


def _emb(table) -> np.ndarray:
    col = table.column("embedding").combine_chunks()
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1)


def test_float16_frames_are_the_float32_run_cast(f16_out, plain_out):
    a = pq.read_table(f16_out / "frames", columns=["path", "frame", "scores", "embedding"]).sort_by(KEYS)
    b = pq.read_table(plain_out / "frames", columns=["path", "frame", "scores", "embedding"]).sort_by(KEYS)
    assert str(a.schema.field("embedding").type.value_type) == "halffloat"
    assert a.column("path").equals(b.column("path")) and a.column("frame").equals(b.column("frame"))
    assert a.column("scores").equals(b.column("scores"))
    assert np.array_equal(_emb(a), _emb(b).astype(np.float16))


def test_similar_on_float16_is_exact_cosine(f16_out, tmp_path):
    out = open_output(str(f16_out))
    t = pq.read_table(f16_out / "frames", columns=["path", "frame", "embedding"]).sort_by(KEYS)
    emb = _emb(t).astype(np.float64)
    path, frame = t.column("path")[40].as_py(), t.column("frame")[40].as_py()
    q = frame_vector(out, path, frame).vector
    assert np.array_equal(np.asarray(q, np.float64), emb[40])
    expected = emb @ emb[40] / (np.linalg.norm(emb, axis=1) * np.linalg.norm(emb[40]))
    for cache in (False, True):
        got = similar(out, frame_vector(out, path, frame), k=10, cache=cache, cache_dir=str(tmp_path / "cache"))
        assert (got.column("path")[0].as_py(), got.column("frame")[0].as_py()) == (path, frame)
        order = np.argsort(-expected, kind="stable")[:10]
        np.testing.assert_allclose(got.column("similarity").to_numpy(), expected[order], rtol=1e-5, atol=1e-6)


def test_pool_on_float16_means_the_stored_embeddings(f16_out, tmp_path):
    uri = pool(open_output(str(f16_out)), str(tmp_path / "clips"))
    clips = pq.read_table(uri).to_pylist()
    t = pq.read_table(f16_out / "frames", columns=["path", "frame", "embedding"]).sort_by(KEYS)
    emb, paths = _emb(t).astype(np.float64), np.asarray(t.column("path").to_pylist())
    assert len(clips) == len(set(paths))
    for c in clips:
        np.testing.assert_allclose(c["mean_embedding"], emb[paths == c["path"]].mean(axis=0), rtol=1e-5, atol=1e-6)


def test_train_and_apply_on_float16(f16_out, labelled, tmp_path):
    head_dir = tmp_path / "h16"
    h = train(str(f16_out), str(labelled["csv"]), str(head_dir), folds=3)
    assert len(h.classes) == 5 and h.metrics["clip"]["accuracy"] > 0.8
    assert main(["apply", str(f16_out), "--head", str(head_dir)]) == 0
    _assert_applied_independently(f16_out, head_dir)
