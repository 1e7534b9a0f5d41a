"""The head file and its forward pass, against numpy written out here; every way a head file can be unusable.

Pure (no pipeline): random heads, scores computed with float64 numpy from the same weights.
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest

from yamnet_beam.model.head import Head, HeadError, check_model, load_head, save_head

SHA = "a" * 64


def _head(activation="softmax", hidden=None, classes=3, seed=0, thresholds=None) -> Head:
    rng = np.random.default_rng(seed)
    dims = [1024, *([hidden] if hidden else []), classes]
    layers = [(rng.standard_normal((i, o)) / 16, rng.standard_normal(o)) for i, o in zip(dims, dims[1:], strict=False)]
    names = [f"c{k}" for k in range(classes)]
    return Head(names, layers, activation, thresholds or [0.5] * classes, SHA, name="h")


def _numpy_scores(layers, activation, x):
    z = np.asarray(x, np.float64)
    for i, (w, b) in enumerate(layers):
        z = z @ np.asarray(w, np.float32).astype(np.float64) + np.asarray(b, np.float32)
        if i < len(layers) - 1:
            z = np.where(z > 0, z, 0.0)
    if activation == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("activation,hidden", [("softmax", None), ("sigmoid", None), ("softmax", 32), ("sigmoid", 8)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_scores_equal_numpy(activation, hidden, dtype):
    h = _head(activation, hidden)
    x = (np.random.default_rng(1).standard_normal((40, 1024)) * 3).astype(dtype)
    got = h.scores(x)
    assert got.dtype == np.float32 and got.shape == (40, 3)
    np.testing.assert_allclose(got, _numpy_scores(h.layers, activation, x), rtol=1e-6, atol=1e-7)
    if activation == "softmax":
        np.testing.assert_allclose(got.sum(axis=1), 1, rtol=1e-6)


def test_scores_do_not_depend_on_the_batch():
    h = _head("softmax", 16)
    x = np.random.default_rng(2).standard_normal((33, 1024)).astype(np.float32)
    whole = h.scores(x)
    assert np.array_equal(np.concatenate([h.scores(x[:1]), h.scores(x[1:7]), h.scores(x[7:])]), whole)


def test_softmax_is_stable_for_large_logits_row_by_row():
    """Each row is shifted by its own maximum: a row far below another batch row's logits must not underflow."""
    h = _head("softmax")
    v = np.random.default_rng(3).standard_normal(1024).astype(np.float32)
    x = np.stack([v * 1e4, -v * 1e4, v])
    got = h.scores(x)
    assert np.isfinite(got).all() and np.allclose(got.sum(axis=1), 1)
    for i in range(3):
        np.testing.assert_allclose(got[i], h.scores(x[i : i + 1])[0], rtol=1e-6, atol=1e-30)


def test_save_then_load_is_the_same_head(tmp_path):
    h = _head("sigmoid", 8, thresholds=[0.1, 0.5, 0.9])
    assert [(w.dtype, b.dtype) for w, b in h.layers] == [(np.float32, np.float32)] * 2  # stored as float32
    h.output_fingerprint, h.metrics = "fp123", {"clip": {"accuracy": 0.5}}
    h.hyperparameters = {"C": np.float32(0.25), "hidden": 8}  # numpy numbers, as scikit-learn hands them over
    sha = save_head(h, str(tmp_path / "h"))
    doc = json.loads((tmp_path / "h" / "head.json").read_text())
    assert doc["layers"] == [[1024, 8], [8, 3]] and doc["hyperparameters"] == {"C": 0.25, "hidden": 8}
    assert sha == hashlib.sha256((tmp_path / "h" / "head.json").read_bytes()).hexdigest()
    got = load_head(str(tmp_path / "h"), expected_sha256=sha)
    assert got.classes == h.classes and got.thresholds == h.thresholds and got.activation == "sigmoid"
    assert (got.name, got.output_fingerprint, got.metrics) == ("h", "fp123", h.metrics) and got.sha256 == sha
    assert got.hyperparameters == {"C": 0.25, "hidden": 8} and got.yamnet_sha256 == SHA
    assert save_head(got, str(tmp_path / "h")) == sha  # saved again over itself: the same bytes
    for (w, b), (w2, b2) in zip(got.layers, h.layers, strict=True):
        assert np.array_equal(w, w2) and np.array_equal(b, b2)
    with pytest.raises(HeadError, match="changed since the job started"):
        load_head(str(tmp_path / "h"), expected_sha256="0" * 64)


def _saved(tmp_path):
    d = tmp_path / "h"
    save_head(_head(), str(d))
    return d, json.loads((d / "head.json").read_text())


def _rewrite_weights(d, doc, arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (d / "weights.npz").write_bytes(buf.getvalue())
    doc["weights_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()  # consistent hashes: only the content is bad
    (d / "head.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "spoil,message",
    [
        (
            lambda d, doc: (d / "head.json").unlink(),
            "has no head.json: pass a directory written by `yamnet-beam train`",
        ),
        (lambda d, doc: (d / "head.json").write_bytes(b"\xff\xfe not json"), "is not JSON"),
        (lambda d, doc: (d / "head.json").write_text("[1, 2]"), "is not a yamnet-beam head file"),
        (lambda d, doc: (d / "head.json").write_text(json.dumps({**doc, "format": "x"})), "not a yamnet-beam head"),
        (
            lambda d, doc: (d / "head.json").write_text(json.dumps({**doc, "format_version": 9})),
            "head format 9, .* retrain it with this version",
        ),
        (lambda d, doc: (d / "weights.npz").unlink(), "has no weights file"),
        (
            lambda d, doc: (d / "head.json").write_text(
                json.dumps({k: v for k, v in doc.items() if k != "weights_file"})
            ),
            "has no weights file",
        ),
        (
            lambda d, doc: (d / "weights.npz").write_bytes(b"PK garbage"),
            "SHA-256 differs.*retrain it or restore both files together",
        ),
        (lambda d, doc: _rewrite_weights(d, doc, {}) or None, "is not a head's weights"),
        (lambda d, doc: _rewrite_weights(d, doc, {"w0": np.zeros((3, 3)), "b0": np.zeros(3)}), "layer 0: W must be"),
        (lambda d, doc: _rewrite_weights(d, doc, {"w0": np.full((1024, 3), np.nan), "b0": np.zeros(3)}), "NaN or inf"),
    ],
)
def test_a_corrupt_head_file_is_refused_with_what_to_do(tmp_path, spoil, message):
    d, doc = _saved(tmp_path)
    spoil(d, doc)
    with pytest.raises(HeadError, match=message):
        load_head(str(d))


def test_pickled_weights_are_never_loaded(tmp_path):
    d, doc = _saved(tmp_path)
    buf = io.BytesIO()
    np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
    import zipfile

    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("w0.npy", buf.getvalue())
        f.writestr("b0.npy", buf.getvalue())
    (d / "weights.npz").write_bytes(z.getvalue())
    doc["weights_sha256"] = hashlib.sha256(z.getvalue()).hexdigest()
    (d / "head.json").write_text(json.dumps(doc))
    with pytest.raises(HeadError, match="is not a head's weights"):
        load_head(str(d))


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(activation="relu"), "activation must be one of"),
        (dict(classes=1), "a softmax head needs at least 2 classes"),
        (dict(thresholds=[0.5, 0.5]), "thresholds must be 3 scores"),
        (dict(thresholds=[0.5, 1.01, 0.5]), "thresholds must be 3 scores"),
        (dict(thresholds=[-0.01, 0.5, 0.5]), "thresholds must be 3 scores"),
    ],
)
def test_check_refuses_inconsistent_heads(kw, message):
    with pytest.raises(HeadError, match=message):
        _head(**kw)


@pytest.mark.parametrize("names", [["a", "a", "b"], ["a", " ", "b"], ["a", "b\nc", "d"], ["a", "b\rc", "d"]])
def test_class_names_must_be_distinct_single_lines(names):
    h = _head()
    with pytest.raises(HeadError, match="class names"):
        Head(names, h.layers, "softmax", [0.5] * 3, SHA)


def test_thresholds_at_zero_and_one_and_a_single_sigmoid_class_are_allowed():
    _head(thresholds=[0.0, 1.0, 0.5])
    assert _head("softmax", classes=2, thresholds=[0.5, 0.5]).num_classes == 2  # the smallest softmax head
    assert _head("sigmoid", classes=1, thresholds=[0.5]).num_classes == 1


def test_a_head_file_without_the_optional_keys_loads_with_their_defaults(tmp_path):
    d, doc = _saved(tmp_path)
    for key in ("name", "output_fingerprint", "metrics", "hyperparameters"):
        doc.pop(key)
    (d / "head.json").write_text(json.dumps(doc))
    got = load_head(str(d))
    assert (got.name, got.output_fingerprint, got.metrics, got.hyperparameters) == ("head", "", {}, {})


@pytest.mark.parametrize(
    "layers,message",
    [
        ([], "a head needs at least one layer"),
        ([(np.zeros((1024, 4)), np.zeros(4))], "the last layer has 4 outputs for 3 classes"),
    ],
)
def test_layers_must_end_in_one_output_per_class(layers, message):
    with pytest.raises(HeadError, match=message):
        Head(["a", "b", "c"], layers, "softmax", [0.5] * 3, SHA)


def test_check_model_refuses_another_model():
    h = _head()
    check_model(h, SHA, "x")
    with pytest.raises(HeadError) as e:
        check_model(h, "b" * 64, "--model m")
    assert "model with SHA-256 aaaaaaaaaaaa..., but --model m uses bbbbbbbbbbbb...: its embeddings differ" in str(
        e.value
    )
    assert str(e.value).endswith("Use that model (--model), or retrain the head on an output of this one")
