"""Cutting YAMNet into a whole-signal front end and a batched CNN, found structurally in the flatbuffer.

The published model takes one 0.975 s frame per invoke, and consecutive frames (hop 0.48 s) share
half their STFT rows. Two subgraphs of the one model remove that waste:

* front end: STFT rows ``[T, 400]`` -> log-mel ``[T, 64]``; every op works row by row, so T is free;
* CNN: patches ``[B, 96, 64, 1]`` -> scores ``[B, 521]`` and embeddings ``[B, 1024]``; every op works
  sample by sample, so B is free.

The cut points are found from the graph's structure, as the embedding is (:func:`find_split`), then
confirmed by a probe run; a graph that is not the known structure gives None, and callers keep
per-frame ``invoke()``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

from yamnet_beam.framing import WINDOW_SAMPLES
from yamnet_beam.model.graph import (
    ModelError,
    analyse,
    dims,
    flatbuffer_schema,
    inline_external_data,
    op_name,
    pack,
    parse,
)
from yamnet_beam.model.litert import make_interpreter

_LOG = logging.getLogger(__name__)

# Ops that only move or re-index data (no arithmetic): the glue between waveform, rows and patch.
_DATA_MOVEMENT = {
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SLICE", "STRIDED_SLICE", "GATHER", "GATHER_ND", "TRANSPOSE",
}  # fmt: skip
# Ops that, on [rows, C] tensors with row-broadcast constants, compute each row from that row alone.
_ROW_WISE = {"MUL", "ADD", "SUB", "DIV", "PAD", "FULLY_CONNECTED", "SQRT", "RSQRT", "SQUARE", "LOG", "ABS", "MAXIMUM"}
# Ops that, on tensors with a leading batch dim, compute each sample from that sample alone.
_PER_SAMPLE = {
    "CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "FULLY_CONNECTED", "LOGISTIC",
    "SOFTMAX", "RELU", "RELU6", "ADD", "MUL", "DEQUANTIZE",
}  # fmt: skip
_MAX_WALK = 16


@dataclass(frozen=True)
class SplitPoints:
    """Tensor indices of the cut points in subgraph 0, and the framing of STFT rows they imply."""

    input: int  # waveform
    rows: int  # [R, L] STFT rows, input of the front end
    logmel: int  # [R, M] log-mel, output of the front end
    patch: int  # [1, R, M, 1], input of the CNN
    scores: int
    embedding: int
    rows_per_frame: int  # R (96)
    row_len: int  # L (400)
    row_hop: int  # samples between rows (160), measured by the probe
    mel_bins: int  # M (64)


# --------------------------------------------------------------------------------------------
# Graph analysis


def _const(model: Any, tensor: Any) -> np.ndarray | None:
    """A constant tensor's values, or None for an activation (no buffer data)."""
    data = model.buffers[tensor.buffer].data if tensor.buffer else None
    if data is None or not len(data):
        return None
    types = flatbuffer_schema().TensorType
    dtype = {types.INT32: np.int32, types.INT64: np.int64, types.FLOAT32: np.float32}.get(tensor.type, np.uint8)
    return np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype)


def _closure(model: Any, outputs: list[int], stop: set[int]) -> list[int] | None:
    """Ops (in execution order) computing ``outputs`` from ``stop`` and constants; None if they need more."""
    sg = model.subgraphs[0]
    producer = {int(t): k for k, op in enumerate(sg.operators) for t in op.outputs}
    keep: set[int] = set()
    seen: set[int] = set()
    todo = list(outputs)
    while todo:
        t = todo.pop()
        if t in seen or t in stop:
            continue
        seen.add(t)
        k = producer.get(t)
        if k is None:
            if _const(model, sg.tensors[t]) is None:
                return None  # depends on the waveform or another input
            continue
        keep.add(k)
        todo.extend(int(i) for i in sg.operators[k].inputs if i >= 0)
    return sorted(keep)


def _static(model: Any) -> set[int]:
    """Constants and tensors computed from constants alone (e.g. DEQUANTIZE of float16 weights)."""
    sg = model.subgraphs[0]
    static = {t for t, tensor in enumerate(sg.tensors) if _const(model, tensor) is not None}
    for op in sg.operators:
        if all(int(i) in static for i in op.inputs if i >= 0):
            static.update(int(o) for o in op.outputs)
    return static


def _tensors(op: Any) -> list[tuple[int, int]]:
    """(position, tensor) for an op's inputs then outputs, skipping optional (-1) inputs."""
    return [(pos, int(t)) for pos, t in enumerate(list(op.inputs) + list(op.outputs)) if t >= 0]


def _row_wise(model: Any, ops: list[int], rows: int, static: set[int]) -> bool:
    """True if every op computes row r of its output from row r of its activation inputs only."""
    sg = model.subgraphs[0]
    for op in (sg.operators[k] for k in ops):
        name = op_name(model, op)
        if all(int(i) in static for i in op.inputs if i >= 0):
            continue  # computes a constant
        if name not in _ROW_WISE:
            return False
        for pos, t in _tensors(op):
            shape = dims(sg.tensors[t])
            if t not in static:
                if len(shape) != 2 or shape[0] not in (rows, -1):
                    return False
            elif name == "PAD":
                pads = _const(model, sg.tensors[t])
                if pos == 1 and (pads is None or pads.reshape(-1, 2)[0].any()):  # must not pad the row axis
                    return False
            elif name != "FULLY_CONNECTED" and len(shape) > 1 and shape[0] != 1:
                return False  # a constant that differs per row
    return True


def _per_sample(model: Any, ops: list[int], static: set[int]) -> bool:
    """True if every op computes sample b of its output from sample b only (safe to resize the batch)."""
    sg = model.subgraphs[0]
    for op in (sg.operators[k] for k in ops):
        name = op_name(model, op)
        if all(int(i) in static for i in op.inputs if i >= 0):
            continue
        if name not in _PER_SAMPLE:
            return False
        if name == "MEAN":
            axes = _const(model, sg.tensors[int(op.inputs[1])])
            if axes is None or 0 in axes:
                return False
        for _, t in _tensors(op):
            shape = dims(sg.tensors[t])
            if t not in static and (not shape or shape[0] not in (1, -1)):
                return False
    return True


def _structure(model: Any) -> SplitPoints | None:
    """Cut points from the graph alone; the row hop is unknown (0) until the probe measures it."""
    try:
        graph = analyse(model)
    except ModelError:
        return None
    sg = model.subgraphs[0]
    static = _static(model)
    names = [op_name(model, op) for op in sg.operators]
    acts = [{int(i) for i in op.inputs if i >= 0 and int(i) not in static} for op in sg.operators]
    first = next((k for k, n in enumerate(names) if n not in _DATA_MOVEMENT and acts[k]), None)
    conv = next((k for k, n in enumerate(names) if n == "CONV_2D"), None)
    if first is None or conv is None or len(acts[first]) != 1:
        return None
    rows, patch = next(iter(acts[first])), int(sg.operators[conv].inputs[0])
    pdims, rdims = dims(sg.tensors[patch]), dims(sg.tensors[rows])
    if len(pdims) != 4 or pdims[0] not in (1, -1) or pdims[3] != 1 or len(rdims) != 2:
        return None
    r, m = pdims[1], pdims[2]
    producer = {int(t): op for op in sg.operators for t in op.outputs}
    logmel = patch
    for _ in range(_MAX_WALK):
        op = producer.get(logmel)
        if op is None or op_name(model, op) not in _DATA_MOVEMENT:
            break
        logmel = int(op.inputs[0])
    if logmel == patch or dims(sg.tensors[logmel]) not in ([r, m], [-1, m]) or rdims[0] not in (r, -1):
        return None
    frontend = _closure(model, [logmel], {rows})
    cnn = _closure(model, [graph.scores_index, graph.embedding_index], {patch})
    if (
        frontend is None
        or cnn is None
        or not _row_wise(model, frontend, r, static)
        or not _per_sample(model, cnn, static)
    ):
        return None
    float32 = flatbuffer_schema().TensorType.FLOAT32
    if any(sg.tensors[t].type != float32 for t in (rows, logmel, patch, graph.scores_index, graph.embedding_index)):
        return None
    return SplitPoints(
        graph.input_index, rows, logmel, patch, graph.scores_index, graph.embedding_index, r, rdims[1], 0, m
    )


def _probe(model_bytes: bytes, p: SplitPoints) -> SplitPoints | None:
    """Run waveform -> (rows, logmel, patch) once: rows must be x[r*hop + j], the patch the log-mel unchanged."""
    try:
        content, inp, outs = cut(model_bytes, [p.input], [p.rows, p.logmel, p.patch])
        interp = make_interpreter(content, 1, "the probe of the front-end/CNN split")
        sig = interp.get_input_details()[0]["shape_signature"]
        shape = [WINDOW_SAMPLES] if list(sig) == [-1] else [1] * (len(sig) - 1) + [WINDOW_SAMPLES]
        interp.resize_tensor_input(inp, shape)
        interp.allocate_tensors()
    except (ModelError, RuntimeError, ValueError) as e:
        _LOG.info("probe of the front-end/CNN split failed: %s", e)
        return None

    def run(x: np.ndarray) -> list[np.ndarray]:
        interp.set_tensor(inp, x.reshape(shape))
        interp.invoke()
        return [interp.get_tensor(i) for i in outs]

    rows = run(np.arange(WINDOW_SAMPLES, dtype=np.float32))[0]  # exact: the glue only moves samples
    if rows.shape != (p.rows_per_frame, p.row_len):
        return None
    hop = int(rows[1, 0] - rows[0, 0])
    expected = np.arange(p.rows_per_frame)[:, None] * hop + np.arange(p.row_len)[None, :]
    if hop <= 0 or not np.array_equal(rows, expected) or expected[-1, -1] >= WINDOW_SAMPLES:
        return None
    x = (np.random.default_rng(0).standard_normal(WINDOW_SAMPLES) * 0.1).astype(np.float32)
    _, logmel, patch = run(x)
    if not np.array_equal(patch.reshape(logmel.shape), logmel):
        return None
    return replace(p, row_hop=hop)


@lru_cache(maxsize=4)
def _find_split(model_bytes: bytes) -> SplitPoints | None:
    try:
        model = parse(model_bytes)
    except ModelError:
        return None
    p = _structure(model)
    return None if p is None else _probe(model_bytes, p)


def find_split(model_bytes: bytes) -> SplitPoints | None:
    """The front-end/CNN cut points of a YAMNet model, or None if its graph is not the known structure.

    Structural: rows = the activation input of the first op that is not pure data movement (the Hann
    MUL after the GATHER that builds [96, 400]), patch = the data input of the first CONV_2D, log-mel =
    the patch traced back through data movement. The front end must be row-wise and the CNN
    per-sample; a probe run then confirms that rows are ``x[r*hop + j]`` and the patch is the log-mel.
    """
    return _find_split(bytes(model_bytes))


# --------------------------------------------------------------------------------------------
# Cutting subgraphs out of the flatbuffer


def cut(model_bytes: bytes, inputs: list[int], outputs: list[int]) -> tuple[bytes, int, list[int]]:
    """A model of just the ops computing ``outputs`` from ``inputs``: (bytes, its input, its output indices)."""
    model = parse(model_bytes)
    inline_external_data(model, model_bytes)
    ops = _closure(model, outputs, set(inputs))
    if ops is None:
        raise ModelError(f"tensors {outputs} do not depend on {inputs} and constants alone")
    sg = model.subgraphs[0]
    old_ops = [sg.operators[k] for k in ops]
    used = sorted({int(t) for op in old_ops for t in list(op.inputs) + list(op.outputs) if t >= 0} | set(inputs))
    remap = {t: i for i, t in enumerate(used)}
    buffers = [model.buffers[0]]
    tensors = []
    for t in used:
        tensor = sg.tensors[t]
        if _const(model, tensor) is None:
            tensor.buffer = 0  # activations must use the empty buffer 0
        else:
            buffers.append(model.buffers[tensor.buffer])
            tensor.buffer = len(buffers) - 1
        tensors.append(tensor)
    for op in old_ops:
        op.inputs = np.asarray([remap[int(t)] if t >= 0 else -1 for t in op.inputs], np.int32)
        op.outputs = np.asarray([remap[int(t)] for t in op.outputs], np.int32)
    sg.tensors, sg.operators = tensors, old_ops
    sg.inputs = np.asarray([remap[t] for t in inputs], np.int32)
    sg.outputs = np.asarray([remap[t] for t in outputs], np.int32)
    model.subgraphs, model.buffers = [sg], buffers
    model.metadata, model.signatureDefs = None, None  # they point at buffers/tensors we renumbered
    return pack(model, len(model_bytes)), remap[inputs[0]], [remap[t] for t in outputs]


@lru_cache(maxsize=4)
def build_models(model_bytes: bytes, points: SplitPoints) -> tuple[bytes, bytes]:
    """(front end, CNN) model bytes: rows [T, L] -> log-mel [T, M]; patches [B, R, M, 1] -> (scores, embeddings).

    Cached: every thread's model cuts the same bytes."""
    frontend = cut(model_bytes, [points.rows], [points.logmel])[0]
    cnn = cut(model_bytes, [points.patch], [points.scores, points.embedding])[0]
    return frontend, cnn


def clear_cache() -> None:
    """Forget cached split points and subgraphs (with :func:`yamnet_beam.model.clear_model_cache`)."""
    _find_split.cache_clear()
    build_models.cache_clear()
