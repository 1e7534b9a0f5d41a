"""Tests for yamnet_beam.model on the real shared model and on tiny models built in Python."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import fsspec
import numpy as np
import pytest
import soundfile as sf
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from tests.support import tflite_builder as tb
from yamnet_beam import model as ym
from yamnet_beam.framing import WINDOW_SAMPLES
from yamnet_beam.model import (
    EMBEDDING_DIM,
    NUM_CLASSES,
    ModelError,
    YamnetModel,
    expose_embedding,
    inspect_model,
    read_model_bytes,
)

HOP = 7680
LABEL_LINES = [f"class {i}" for i in range(NUM_CLASSES)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _dynamic_quant_fc(x: np.ndarray, w_int8: np.ndarray, w_scale: float, bias: np.ndarray) -> np.ndarray:
    """Hybrid FC as XNNPACK computes it: each input row quantized to asymmetric int8 at run time.

    Measured on the shared model: this matches LiteRT's scores to 6e-8, while plain float math
    with dequantized weights is off by up to 4.7e-3 (the activations' quantization error).
    """
    lo = np.minimum(x.min(axis=1, keepdims=True), 0.0)
    hi = np.maximum(x.max(axis=1, keepdims=True), 0.0)
    scale = (hi - lo) / 255.0
    zero = np.round(-128.0 - lo / scale)
    q = np.clip(np.round(x / scale) + zero, -128, 127)
    acc = (q - zero).astype(np.float64) @ w_int8.astype(np.float64).T
    return _sigmoid(acc * scale * w_scale + bias)


def _random_frames(n: int, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, WINDOW_SAMPLES)) * 0.3).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The real shared model


@pytest.fixture(scope="module")
def real_bytes(model_path: Path) -> bytes:
    return model_path.read_bytes()


@pytest.fixture(scope="module")
def real_model(real_bytes: bytes, model_path: Path) -> YamnetModel:
    return YamnetModel(real_bytes, uri=str(model_path))


@pytest.fixture(scope="module")
def speech_frames(fixtures_dir: Path) -> np.ndarray:
    audio, rate = sf.read(fixtures_dir / "speech_16k_float32.wav", dtype="float32")
    assert rate == 16000 and audio.ndim == 1
    n = 1 + (len(audio) - WINDOW_SAMPLES) // HOP
    frames = np.stack([audio[i * HOP : i * HOP + WINDOW_SAMPLES] for i in range(min(n, 8))])
    return np.concatenate([frames, np.zeros((1, WINDOW_SAMPLES), np.float32)])


def test_inspect_real_model(real_bytes: bytes, model_path: Path) -> None:
    info = inspect_model(real_bytes, uri=str(model_path))
    assert info.kind == "fixed"
    assert (info.num_classes, info.embedding_dim) == (521, 1024)
    assert info.embedding_tensor == "yamnet_frames/global_average_pooling2d/Mean"
    assert info.sha256 == hashlib.sha256(real_bytes).hexdigest()
    assert info.size_bytes == len(real_bytes)
    assert info.uri == str(model_path)
    assert info.embedded_labels is None
    assert info.runtime.startswith("ai-edge-litert 2.")


def test_expose_embedding_only_appends_an_output(real_bytes: bytes) -> None:
    def outputs(buf: bytes) -> list[str]:
        sg = schema.Model.GetRootAsModel(buf, 0).Subgraphs(0)
        return [sg.Tensors(sg.Outputs(i)).Name().decode() for i in range(sg.OutputsLength())]

    exposed = expose_embedding(real_bytes)
    assert exposed[4:8] == b"TFL3"
    assert outputs(exposed) == [*outputs(real_bytes), "yamnet_frames/global_average_pooling2d/Mean"]


def test_real_scores_bit_identical_to_plain_interpreter(
    real_model: YamnetModel, model_path: Path, speech_frames: np.ndarray
) -> None:
    plain = Interpreter(model_path=str(model_path), num_threads=1)
    plain.allocate_tensors()
    inp = plain.get_input_details()[0]["index"]
    out = next(d["index"] for d in plain.get_output_details() if d["name"] == "Identity")
    expected = []
    for frame in speech_frames:
        plain.set_tensor(inp, frame[None])
        plain.invoke()
        expected.append(plain.get_tensor(out)[0].copy())

    scores, embeddings = real_model.predict(speech_frames)
    assert scores.dtype == embeddings.dtype == np.float32
    assert scores.shape == (len(speech_frames), NUM_CLASSES)
    assert embeddings.shape == (len(speech_frames), EMBEDDING_DIM)
    np.testing.assert_array_equal(scores, np.stack(expected))
    # Speech dominates the speech frames (AudioSet class 0 is "Speech").
    assert (scores[:-1].argmax(axis=1) == 0).mean() >= 0.5


def test_real_embeddings_explain_the_scores(
    real_model: YamnetModel, real_bytes: bytes, speech_frames: np.ndarray
) -> None:
    scores, embeddings = real_model.predict(speech_frames)
    again_scores, again_embeddings = real_model.predict(speech_frames)
    np.testing.assert_array_equal(embeddings, again_embeddings)
    np.testing.assert_array_equal(scores, again_scores)
    assert np.isfinite(embeddings).all()
    assert (embeddings >= 0).all()  # mean over ReLU activations
    assert (embeddings[:-1].max(axis=1) > 0).all()

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(real_bytes, 0))
    sg = m.subgraphs[0]
    # The classifier layer: the only weight matrix shaped [521, 1024] (the mel front end has its own FC).
    fc = next(
        op
        for op in sg.operators
        if len(op.inputs) > 2 and list(sg.tensors[op.inputs[1]].shape) == [NUM_CLASSES, EMBEDDING_DIM]
    )
    w_t, b_t = sg.tensors[fc.inputs[1]], sg.tensors[fc.inputs[2]]
    assert w_t.type == schema.TensorType.INT8  # hybrid: int8 weights, activations quantized at run time
    w_int8 = m.buffers[w_t.buffer].data.view(np.int8).reshape(NUM_CLASSES, EMBEDDING_DIM)
    w_scale = float(w_t.quantization.scale[0])
    bias = m.buffers[b_t.buffer].data.view(np.float32)

    np.testing.assert_allclose(scores, _dynamic_quant_fc(embeddings, w_int8, w_scale, bias), atol=1e-5)
    float_ref = _sigmoid(embeddings.astype(np.float64) @ (w_int8 * w_scale).T.astype(np.float64) + bias)
    np.testing.assert_allclose(scores, float_ref, atol=1e-2)


def test_predict_returns_owned_copies_and_accepts_float64(real_model: YamnetModel, speech_frames: np.ndarray) -> None:
    s1, e1 = real_model.predict(speech_frames[:2].astype(np.float64))
    keep = s1.copy(), e1.copy()
    real_model.predict(speech_frames[2:4])
    np.testing.assert_array_equal(s1, keep[0])
    np.testing.assert_array_equal(e1, keep[1])
    s2, _ = real_model.predict(speech_frames[:2])
    np.testing.assert_array_equal(s1, s2)


@pytest.mark.parametrize("shape", [(WINDOW_SAMPLES,), (2, 16000), (2, WINDOW_SAMPLES, 1), (0,)])
def test_predict_rejects_wrong_frame_shape(real_model: YamnetModel, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="F, 15600"):
        real_model.predict(np.zeros(shape, np.float32))


def test_predict_zero_frames(real_model: YamnetModel) -> None:
    scores, embeddings = real_model.predict(np.zeros((0, WINDOW_SAMPLES), np.float32))
    assert scores.shape == (0, NUM_CLASSES) and embeddings.shape == (0, EMBEDDING_DIM)


def test_one_instance_per_thread_gives_identical_results(
    real_bytes: bytes, speech_frames: np.ndarray, real_model: YamnetModel
) -> None:
    expected = real_model.predict(speech_frames)
    results: list[tuple[np.ndarray, np.ndarray]] = []

    def work() -> None:
        results.append(YamnetModel(real_bytes).predict(speech_frames))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    for scores, embeddings in results:
        np.testing.assert_array_equal(scores, expected[0])
        np.testing.assert_array_equal(embeddings, expected[1])


# ---------------------------------------------------------------------------------------------
# Reading model bytes


def test_read_model_bytes_caches_per_uri(tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(tb.fixed_model())
    first = read_model_bytes(str(path))
    path.write_bytes(b"changed")
    assert read_model_bytes(str(path)) is first
    ym.clear_model_cache()
    assert read_model_bytes(str(path)) == b"changed"
    ym.clear_model_cache()


def test_read_model_bytes_is_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(tb.fixed_model())
    got: list[bytes] = []
    threads = [threading.Thread(target=lambda: got.append(read_model_bytes(str(path)))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(g is got[0] for g in got)
    ym.clear_model_cache()


def test_from_uri_reads_fsspec_urls() -> None:
    with fsspec.open("memory://models/tiny.tflite", "wb") as f:
        f.write(tb.variable_model())
    m = YamnetModel.from_uri("memory://models/tiny.tflite")
    assert m.info.uri == "memory://models/tiny.tflite" and m.info.kind == "variable"
    frames = _random_frames(2)
    np.testing.assert_allclose(m.predict(frames)[0], tb.expected_scores(frames), atol=1e-5)
    ym.clear_model_cache()


@pytest.mark.parametrize("which", ["missing", "directory"])
def test_read_model_bytes_errors_say_what_to_do(tmp_path: Path, which: str) -> None:
    uri = str(tmp_path / "nope.tflite") if which == "missing" else str(tmp_path)
    with pytest.raises(ModelError, match="yamnet-beam download" if which == "missing" else "directory"):
        read_model_bytes(uri)


# ---------------------------------------------------------------------------------------------
# Tiny models built in Python


@pytest.mark.parametrize(
    "outputs",
    [
        ("scores", "embeddings", "spectrogram"),
        ("embeddings", "spectrogram", "scores"),
        ("spectrogram", "scores", "embeddings"),
        ("scores", "embeddings"),
    ],
)
def test_variable_length_model(outputs: tuple[str, ...]) -> None:
    model_bytes = tb.variable_model(outputs)
    info = inspect_model(model_bytes)
    assert info.kind == "variable" and info.embedding_tensor == "embeddings"
    assert expose_embedding(model_bytes) is model_bytes  # already an output: nothing to rewrite
    frames = _random_frames(5)
    scores, embeddings = YamnetModel(model_bytes).predict(frames)
    np.testing.assert_allclose(scores, tb.expected_scores(frames), atol=1e-5)
    np.testing.assert_array_equal(embeddings, frames[:, :EMBEDDING_DIM])


@pytest.mark.parametrize(
    ("variant", "embedding_tensor"),
    [("plain", "features/Mean"), ("reshaped", "features/flatten")],
)
def test_fixed_model_embedding_is_found_structurally(variant: str, embedding_tensor: str) -> None:
    model_bytes = tb.fixed_model(variant)
    info = inspect_model(model_bytes)
    assert info.kind == "fixed" and info.embedding_tensor == embedding_tensor
    frames = _random_frames(4)
    scores, embeddings = YamnetModel(model_bytes).predict(frames)
    np.testing.assert_allclose(scores, tb.expected_scores(frames), atol=1e-5)
    np.testing.assert_array_equal(embeddings, frames[:, :EMBEDDING_DIM])


def test_hybrid_int8_weights_model_matches_dynamic_quantization() -> None:
    model_bytes = tb.fixed_model(int8_weights=True)
    frames = _random_frames(4)
    scores, embeddings = YamnetModel(model_bytes).predict(frames)
    w, b = tb.fc_params()
    w_scale = float(np.abs(w).max() / 127.0)
    w_int8 = np.clip(np.round(w / w_scale), -127, 127)
    np.testing.assert_array_equal(embeddings, frames[:, :EMBEDDING_DIM])
    np.testing.assert_allclose(scores, _dynamic_quant_fc(embeddings, w_int8, w_scale, b), atol=1e-5)


@pytest.mark.parametrize("build", [tb.fixed_model, tb.variable_model])
def test_large_model_format_is_inlined(build) -> None:
    original = build()
    large = tb.to_large_model_format(original)
    assert len(large) > len(original)  # weights really moved after the flatbuffer
    frames = _random_frames(3)
    scores, embeddings = YamnetModel(large).predict(frames)
    np.testing.assert_allclose(scores, tb.expected_scores(frames), atol=1e-5)
    np.testing.assert_array_equal(embeddings, frames[:, :EMBEDDING_DIM])


def test_model_with_appended_labels_zip_runs_and_reports_labels() -> None:
    model_bytes = tb.with_zip(
        tb.fixed_model(),
        {"yamnet_label_list.txt": "\n".join(LABEL_LINES) + "\n", "README.txt": "hello\n"},
    )
    info = inspect_model(model_bytes)
    assert info.embedded_labels == tuple(LABEL_LINES)
    assert info.embedded_labels_file == "yamnet_label_list.txt"
    frames = _random_frames(2)
    scores, _ = YamnetModel(model_bytes).predict(frames)
    np.testing.assert_allclose(scores, tb.expected_scores(frames), atol=1e-5)


def _csv_labels() -> str:
    return "index,mid,display_name\n" + "".join(f'{i},/m/{i},"name, {i}"\n' for i in range(NUM_CLASSES))


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"yamnet_label_list.txt": "\n".join(LABEL_LINES)}, tuple(LABEL_LINES)),
        ({"labels.txt": "\n".join(LABEL_LINES) + "\n\n"}, tuple(LABEL_LINES)),
        ({"class_map.csv": _csv_labels()}, tuple(f"name, {i}" for i in range(NUM_CLASSES))),
        (
            {"other.txt": "\n".join(reversed(LABEL_LINES)), "my_labels.txt": "\n".join(LABEL_LINES)},
            tuple(LABEL_LINES),
        ),
        ({"labels.txt": "\n".join(LABEL_LINES[:-1])}, None),  # 520 lines: not this model's labels
        ({"labels.json": "\n".join(LABEL_LINES)}, None),
        ({}, None),
    ],
)
def test_embedded_labels(files: dict[str, str], expected: tuple[str, ...] | None) -> None:
    assert inspect_model(tb.with_zip(tb.fixed_model(), files)).embedded_labels == expected


def test_no_embedded_labels_without_zip(real_bytes: bytes) -> None:
    assert inspect_model(real_bytes).embedded_labels is None


# ---------------------------------------------------------------------------------------------
# Invalid models


@pytest.mark.parametrize(
    ("model_bytes", "message"),
    [
        (b"", "empty"),
        (np.random.default_rng(0).bytes(4096), "not a TFLite model"),
        (b"index,mid,display_name\n0,/m/09x0r,Speech\n", "not a TFLite model"),
        (b"\x00\x00\x00\x00TFL3", "corrupt TFLite model"),
        (tb.fixed_model()[:1000], "corrupt TFLite model"),
        (tb.fixed_model(classes=520), "no 521-wide scores output"),
        (tb.fixed_model(width=1000), "no 1024-D embedding"),
        (tb.fixed_model(input_len=16000), "wrong model signature"),
        (tb.fixed_model(input_type=schema.TensorType.INT32), "wrong model signature"),
    ],
    ids=["empty", "random", "text", "header-only", "truncated", "520-classes", "1000-wide", "16000-input", "int-input"],
)
def test_invalid_models_raise_readable_model_error(model_bytes: bytes, message: str) -> None:
    with pytest.raises(ModelError, match=message) as err:
        inspect_model(model_bytes)
    assert len(str(err.value)) < 600
    with pytest.raises(ModelError, match=message):
        YamnetModel(model_bytes)


def test_model_error_is_a_value_error() -> None:
    assert issubclass(ModelError, ValueError)


def test_wrong_output_width_error_lists_outputs() -> None:
    with pytest.raises(ModelError) as err:
        inspect_model(tb.fixed_model(classes=520))
    assert "'scores' [1, 520] FLOAT32" in str(err.value)
    assert "yamnet-beam download" in str(err.value)
