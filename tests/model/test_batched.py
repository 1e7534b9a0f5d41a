"""The batched path (shared STFT rows + batched CNN) equals per-frame invoke of the whole model, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from tests.support import tflite_builder as tb
from yamnet_beam.framing import HOP_SAMPLES, WINDOW_SAMPLES, frame_signal, num_frames
from yamnet_beam.model import ModelError, YamnetModel, inference_path, inspect_model, runtime
from yamnet_beam.model.batched import BatchedYamnet, Pair, probe_signal
from yamnet_beam.model.graph import op_name, pack, parse, tensor_name
from yamnet_beam.model.split import build_models, find_split


@pytest.fixture(scope="module")
def model_bytes(model_path: Path) -> bytes:
    return model_path.read_bytes()


@pytest.fixture(scope="module")
def reference(model_bytes: bytes) -> YamnetModel:
    """The per-frame path: one invoke per [1, 15600] frame of the whole graph (embedding exposed)."""
    return YamnetModel(model_bytes, batched=False)


@pytest.fixture(scope="module")
def model(model_bytes: bytes) -> YamnetModel:
    m = YamnetModel(model_bytes)
    assert m.inference() == "batched"
    return m


@pytest.fixture(scope="module")
def speech(fixtures_dir: Path) -> np.ndarray:
    x, sr = sf.read(fixtures_dir / "speech_16k_float32.wav", dtype="float32")
    assert sr == 16000 and x.ndim == 1
    return x


def long_signal(speech: np.ndarray, seconds: float) -> np.ndarray:
    """Real speech at varying gains, with noise and a silent stretch; its length is not a multiple of any hop."""
    rng = np.random.default_rng(7)
    n = int(seconds * 16000) + 123
    reps = [speech * g for g in rng.uniform(0.2, 1.5, size=n // len(speech) + 1)]
    x = np.concatenate(reps)[:n] + rng.standard_normal(n).astype(np.float32) * 0.01
    x[5 * 16000 : 7 * 16000] = 0.0
    return x.astype(np.float32)


def assert_bit_identical(got: Pair, want: Pair) -> None:
    for name, g, w in zip(("scores", "embeddings"), got, want, strict=True):
        assert g.shape == w.shape and g.dtype == np.float32, name
        assert np.array_equal(g, w), f"{name}: {np.count_nonzero(g != w)} values differ, max {np.abs(g - w).max()}"


def per_frame(reference: YamnetModel, x: np.ndarray, hop: int = HOP_SAMPLES) -> Pair:
    return reference.predict(frame_signal(x, hop))


# ---------------------------------------------------------------------------------------------
# Finding the split


def test_split_points_are_the_documented_tensors(model_bytes: bytes) -> None:
    p = find_split(model_bytes)
    assert p is not None
    tensors = parse(model_bytes).subgraphs[0].tensors
    names = {k: tensor_name(tensors[getattr(p, k)]) for k in ("rows", "logmel", "patch", "scores", "embedding")}
    assert names == {
        "rows": "yamnet_frames/tf_op_layer_Reshape_1/Reshape_1",
        "logmel": "Identity_1",
        "patch": "yamnet_frames/reshape/Reshape",
        "scores": "Identity",
        "embedding": "yamnet_frames/global_average_pooling2d/Mean",
    }
    assert (p.rows_per_frame, p.row_len, p.row_hop, p.mel_bins) == (96, 400, 160, 64)


def test_cut_models_resize_to_any_rows_and_batch(model_bytes: bytes) -> None:
    frontend, cnn = build_models(model_bytes, find_split(model_bytes))
    f = Interpreter(model_content=frontend)
    f.resize_tensor_input(f.get_input_details()[0]["index"], [7, 400])
    f.allocate_tensors()
    assert [list(d["shape"]) for d in f.get_output_details()] == [[7, 64]]
    c = Interpreter(model_content=cnn)
    c.resize_tensor_input(c.get_input_details()[0]["index"], [3, 96, 64, 1])
    c.allocate_tensors()
    assert [list(d["shape"]) for d in c.get_output_details()] == [[3, 521], [3, 1024]]


@pytest.mark.parametrize(
    "content",
    [tb.fixed_model(), tb.fixed_model("reshaped", int8_weights=True), tb.variable_model(), b"not a model at all"],
    ids=["fake-fixed", "fake-reshaped", "fake-variable", "garbage"],
)
def test_unknown_graphs_keep_per_frame_invoke(content: bytes) -> None:
    assert find_split(content) is None
    assert BatchedYamnet.create(content, expected=(np.zeros(0), np.zeros(0))) is None
    with pytest.raises(ModelError, match="per frame"):
        BatchedYamnet(content)
    if content.startswith(b"not"):
        return
    m = YamnetModel(content)
    assert m.inference() == "per_frame"
    x = np.random.default_rng(0).standard_normal(3 * WINDOW_SAMPLES).astype(np.float32)
    assert_bit_identical(m.embed(x, 5000), m.predict(frame_signal(x, 5000)))  # the same API, per frame


def _mutated(model_bytes: bytes, tensor: str, values: np.ndarray) -> bytes:
    """The real model with one constant tensor's values replaced (same dtype and size)."""
    m = parse(model_bytes)
    t = next(t for t in m.subgraphs[0].tensors if tensor_name(t) == tensor)
    old = np.asarray(m.buffers[t.buffer].data, np.uint8)
    new = np.frombuffer(np.ascontiguousarray(values).tobytes(), np.uint8)
    assert new.size == old.size
    m.buffers[t.buffer].data = new
    return pack(m, len(model_bytes))


def _mean_axes(model_bytes: bytes) -> str:
    m = parse(model_bytes)
    sg = m.subgraphs[0]
    mean = next(op for op in sg.operators if op_name(m, op) == "MEAN")
    return tensor_name(sg.tensors[int(mean.inputs[1])])


def _swapped_chunks() -> np.ndarray:
    idx = np.arange(96)[:, None] * 2 + np.arange(5)[None, :]  # [96, 5] chunk indices: row r = chunks 2r..2r+4
    idx[[10, 11]] = idx[[11, 10]]
    return idx.astype(np.int32)


@pytest.mark.parametrize(
    "tensor,values",
    [
        # structural checks: the front end must not pad the row axis; the CNN must not mix the batch
        ("yamnet_frames/tf_op_layer_Pad/Pad/paddings", np.array([[1, 0], [0, 111]], np.int32)),
        (None, np.array([0, 1], np.int32)),
        # the probe: rows must be a regular grid of the waveform, the patch the log-mel unchanged
        ("yamnet_frames/tf_op_layer_GatherV2/GatherV2/indices", _swapped_chunks()),
        ("yamnet_frames/tf_op_layer_GatherV2_1/GatherV2_1/indices", np.array([[1, 0]], np.int32)),
    ],
    ids=["pad-rows", "mean-over-batch", "rows-not-a-grid", "patch-reorders-log-mel"],
)
def test_graphs_that_batching_would_change_are_rejected(model_bytes: bytes, tensor: str | None, values) -> None:
    assert find_split(_mutated(model_bytes, tensor or _mean_axes(model_bytes), values)) is None


def test_the_variable_input_kind_is_split_too(model_bytes: bytes, speech: np.ndarray) -> None:
    """The real graph with input signature [-1] (the "variable" kind, resized to one frame per invoke)."""
    m = parse(model_bytes)
    t = m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]]
    t.shape, t.shapeSignature = np.array([WINDOW_SAMPLES], np.int32), np.array([-1], np.int32)
    variable = pack(m, len(model_bytes))
    assert inspect_model(variable).kind == "variable"
    assert find_split(variable) == find_split(model_bytes)
    x = long_signal(speech, 10.0)
    assert_bit_identical(YamnetModel(variable).embed(x), per_frame(YamnetModel(variable, batched=False), x))


def _float16_constants(model_bytes: bytes, names: list[str]) -> bytes:
    """The real model with some float32 constants stored as float16 behind DEQUANTIZE ops, as fp16 converters do."""
    m = parse(model_bytes)
    sg = m.subgraphs[0]
    codes = [max(int(c.builtinCode), int(c.deprecatedBuiltinCode)) for c in m.operatorCodes]
    deq = codes.index(schema.BuiltinOperator.DEQUANTIZE)
    ops = []
    for name in names:
        index = next(i for i, t in enumerate(sg.tensors) if tensor_name(t) == name)
        t = sg.tensors[index]
        values = np.frombuffer(np.asarray(m.buffers[t.buffer].data, np.uint8).tobytes(), np.float32)
        buf = schema.BufferT()
        buf.data = np.frombuffer(values.astype(np.float16).tobytes(), np.uint8)
        m.buffers.append(buf)
        half = schema.TensorT()
        half.name, half.shape, half.type, half.buffer = (
            name + "/fp16",
            t.shape,
            schema.TensorType.FLOAT16,
            len(m.buffers) - 1,
        )
        sg.tensors.append(half)
        t.buffer = 0  # now an activation computed by DEQUANTIZE
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = (
            deq,
            np.array([len(sg.tensors) - 1], np.int32),
            np.array([index], np.int32),
        )
        ops.append(op)
    sg.operators = ops + sg.operators
    return pack(m, len(model_bytes))


def test_constants_behind_dequantize_ops_are_still_constants(model_bytes: bytes, speech: np.ndarray) -> None:
    # the Hann window (front end) and the first conv's bias (CNN); XNNPACK rejects a float16 bias in a hybrid FC
    fp16 = _float16_constants(
        model_bytes, ["yamnet_frames/tf_op_layer_Mul/Mul/y", "yamnet_frames/layer1/conv/bn/FusedBatchNormV3"]
    )
    x = long_signal(speech, 10.0)
    want = per_frame(YamnetModel(fp16, batched=False), x)
    assert not np.array_equal(want[0], per_frame(YamnetModel(model_bytes, batched=False), x)[0])  # really changed
    batched = YamnetModel(fp16)
    assert batched.inference() == "batched"
    assert_bit_identical(batched.embed(x), want)


def test_a_runtime_that_batches_differently_keeps_per_frame_invoke(model_bytes: bytes, reference, monkeypatch) -> None:
    """create() compares with per-frame invoke on probe audio: one bit off anywhere and it declines;
    a model whose check failed in this process runs per frame, with the same API."""
    scores, embeddings = reference.predict(frame_signal(probe_signal()))
    assert BatchedYamnet.create(model_bytes, (scores, embeddings)) is not None
    off = embeddings.copy()
    off[-1, 7] = np.nextafter(off[-1, 7], np.float32(1))
    assert BatchedYamnet.create(model_bytes, (scores, off)) is None

    monkeypatch.setitem(runtime._verdicts, (inspect_model(model_bytes).sha256, 1), False)
    m = YamnetModel(model_bytes)
    assert not m.has_batched_path and m.inference() == "per_frame"
    assert inference_path(model_bytes) == "per_frame"
    x = probe_signal()
    assert_bit_identical(m.embed(x), reference.predict(frame_signal(x)))


# ---------------------------------------------------------------------------------------------
# Bit identity with per-frame invoke


def test_scores_equal_a_raw_interpreter_on_the_unmodified_file(model: YamnetModel, model_path, speech) -> None:
    """Independent of yamnet_beam.model: the original file, its own input and output, one frame per invoke."""
    interp = Interpreter(model_path=str(model_path), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    want = []
    for frame in frame_signal(speech):
        interp.set_tensor(inp, frame[None])
        interp.invoke()
        want.append(interp.get_tensor(out)[0])
    assert np.array_equal(model.embed(speech)[0], np.stack(want))


@pytest.fixture(scope="module")
def long_case(reference: YamnetModel, speech: np.ndarray) -> tuple[np.ndarray, Pair]:
    x = long_signal(speech, 60.0)
    return x, per_frame(reference, x)


@pytest.mark.parametrize("batch", [1, 4, 16, 64])
def test_a_long_input_is_bit_identical(model: YamnetModel, long_case, batch: int) -> None:
    x, want = long_case
    got = model.embed(x, HOP_SAMPLES, batch)
    assert len(got[0]) == num_frames(len(x)) == 124
    assert_bit_identical(got, want)


@pytest.mark.parametrize("extra", [0, 1], ids=["ends-on-a-window", "one-sample-past"])
def test_lengths_at_a_window_boundary(model: YamnetModel, reference, speech, extra: int) -> None:
    x = long_signal(speech, 10.0)[: WINDOW_SAMPLES + 5 * HOP_SAMPLES + extra]
    got = model.embed(x)
    assert len(got[0]) == 6 + extra  # one sample past: a 7th frame of 1 sample and zero padding
    assert_bit_identical(got, per_frame(reference, x))


@pytest.mark.parametrize("name", ["short_0.3s_16k.wav", "exact_one_frame_16k.wav", "silence_10s_16k.wav", ""])
def test_short_and_silent_clips(model: YamnetModel, reference, fixtures_dir, name: str) -> None:
    x = sf.read(fixtures_dir / name, dtype="float32")[0] if name else np.zeros(0, np.float32)
    got = model.embed(x)
    assert len(got[0]) == num_frames(len(x))
    assert_bit_identical(got, per_frame(reference, x))


def _streamed(stream, x: np.ndarray) -> Pair:
    results = [*stream.push(x), *stream.finish()]
    return np.concatenate([r.scores for r in results]), np.concatenate([r.embeddings for r in results])


@pytest.mark.parametrize(
    "hop,path",
    [
        (1600, "batched"),  # 0.1 s: 10 new rows per frame, 86 shared with the previous frame
        (4080, "batched"),  # 25.5 rows: frames k and k+2 share 45 rows (computed once), neighbours share none
        (7681, "per_frame"),  # not a multiple of 160: no two frames share a row
        (15360, "per_frame"),  # 0.96 s = 96 rows: frames touch, share none
        (15599, "per_frame"),
    ],
)
def test_other_hops(model: YamnetModel, model_bytes: bytes, reference, speech, hop: int, path: str) -> None:
    """Without shared rows the split gains nothing (measured slower), so the model invokes per frame; the
    batched path itself (each frame's own 96 rows stacked into one front-end input) is bit-identical too."""
    x = long_signal(speech, 12.0)
    want = per_frame(reference, x, hop)
    assert model.inference(hop) == path
    assert_bit_identical(model.embed(x, hop, 16), want)
    assert_bit_identical(_streamed(BatchedYamnet(model_bytes).stream(hop, 16), x), want)


def test_frames_given_apart_are_invoked_per_frame(model: YamnetModel, reference, speech) -> None:
    frames = frame_signal(long_signal(speech, 8.0), 5000)
    assert_bit_identical(model.embed(frames, batch=3), reference.predict(frames))


def test_small_front_end_runs_change_nothing(model_bytes: bytes, reference, speech) -> None:
    x = long_signal(speech, 15.0)
    small = BatchedYamnet(model_bytes, max_rows=96)  # one frame's rows per front-end invoke
    want = per_frame(reference, x)
    for batch in (1, 3):
        assert_bit_identical(_streamed(small.stream(HOP_SAMPLES, batch), x), want)


# ---------------------------------------------------------------------------------------------
# Streams of blocks, as the job feeds them


def _collect(results) -> Pair:
    results = list(results)
    assert [r.first_frame for r in results] == list(np.cumsum([0] + [len(r) for r in results[:-1]]))
    return np.concatenate([r.scores for r in results]), np.concatenate([r.embeddings for r in results])


@pytest.mark.parametrize("hop", [HOP_SAMPLES, 7681])
def test_a_stream_of_blocks_equals_the_whole_signal(model: YamnetModel, reference, speech, hop: int) -> None:
    x = long_signal(speech, 40.0)
    rng = np.random.default_rng(3)
    cuts = np.sort(rng.choice(len(x), size=12, replace=False))
    blocks = np.split(x, np.sort(np.concatenate([cuts, [cuts[0] + 1, cuts[0] + 2]])))  # tiny blocks too
    stream = model.stream(hop, 16)
    got = _collect([r for block in blocks for r in stream.push(block)] + list(stream.finish()))
    assert_bit_identical(got, per_frame(reference, x, hop))
    with pytest.raises(RuntimeError, match="new StreamFramer"):
        list(stream.push(x[:10]))


@pytest.mark.parametrize("seconds", [5.0, 10.0, 0.5])
@pytest.mark.parametrize("batch", [4, 3])
def test_a_clip_pushed_as_its_last_block_equals_per_frame_invoke(model, reference, speech, seconds, batch) -> None:
    """How the job feeds a short file: its one block pushed with ``final``, one span through both subgraphs."""
    x = long_signal(speech, seconds)[: int(seconds * 16000)]
    stream = model.stream(HOP_SAMPLES, batch)
    results = list(stream.push(x, final=True))
    assert len(results) == 1 and stream.finished
    assert_bit_identical(_collect(results), per_frame(reference, x))


@pytest.mark.parametrize("end", ["finish", "flush"])
def test_whole_batch_pushes_equal_per_frame_invoke(model: YamnetModel, reference, speech, end: str) -> None:
    """As the job pushes 10 s blocks: 21 frames each, so frames are held back to keep every CNN batch whole."""
    x = long_signal(speech, 47.0)
    stream = model.stream(HOP_SAMPLES, 4)
    results = [r for i in range(0, len(x), 160_000) for r in stream.push(x[i : i + 160_000], whole=True)]
    assert all(len(r) % 4 == 0 for r in results)
    results += list(stream.finish() if end == "finish" else stream.flush())
    want = per_frame(reference, x)
    if end == "flush":  # the end of a segment: complete frames only
        count = (len(x) - WINDOW_SAMPLES) // HOP_SAMPLES + 1
        want = (want[0][:count], want[1][:count])
    assert_bit_identical(_collect(results), want)


def test_a_stream_started_at_a_frame_index_gives_that_frame_on(model: YamnetModel, long_case) -> None:
    """What a segment of a long file does: its samples from frame i's start; not finished unless it is the last."""
    x, want = long_case
    first, count = 37, 40
    start = first * HOP_SAMPLES
    stream = model.stream(HOP_SAMPLES, 16)
    got = _collect(stream.push(x[start : start + (count - 1) * HOP_SAMPLES + WINDOW_SAMPLES]))
    assert_bit_identical(got, (want[0][first : first + count], want[1][first : first + count]))
    tail = model.stream(HOP_SAMPLES, 16)
    end = _collect([*tail.push(x[start:]), *tail.finish()])
    assert_bit_identical(end, (want[0][first:], want[1][first:]))


def test_bad_arguments_fail_with_a_message(model: YamnetModel, model_bytes: bytes) -> None:
    with pytest.raises(ValueError, match="hop_samples"):
        model.stream(0)
    with pytest.raises(ValueError, match="batch"):
        model.embed(np.zeros(100, np.float32), HOP_SAMPLES, 0)
    with pytest.raises(ValueError, match="max_rows"):
        BatchedYamnet(model_bytes, max_rows=95)
    with pytest.raises(ValueError, match="1-D 16 kHz waveform"):
        model.embed(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="need 23280 samples"):
        BatchedYamnet(model_bytes).embed_span(np.zeros(20000, np.float32), 2)


def test_strided_and_float64_signals(model: YamnetModel, reference, speech) -> None:
    """A channel of interleaved stereo is a strided view; float64 is cast as frame_signal casts it."""
    x = long_signal(speech, 9.0)
    want = per_frame(reference, x)
    assert_bit_identical(model.embed(np.stack([x, -x], axis=1)[:, 0]), want)
    assert_bit_identical(model.embed(x.astype(np.float64)), want)
