"""Build tiny YAMNet-shaped TFLite models in pure Python (no TensorFlow) for tests.

The models mimic the two published layouts with a linear "network" whose output we can compute
independently in numpy: the embedding is the first 1024 samples of each frame, and the scores
are ``sigmoid(W @ embedding + b)``.
"""

from __future__ import annotations

import io
import zipfile

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as s

WINDOW = 15600
CLASSES = 521
WIDTH = 1024

_NP_TYPES = {
    s.TensorType.FLOAT32: np.float32,
    s.TensorType.INT32: np.int32,
    s.TensorType.INT8: np.int8,
    s.TensorType.FLOAT16: np.float16,
}


def fc_params(seed: int = 0, classes: int = CLASSES, width: int = WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """Small deterministic weights so sigmoid stays away from saturation."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((classes, width)) * 0.05).astype(np.float32)
    b = (rng.standard_normal(classes) * 0.1).astype(np.float32)
    return w, b


def expected_scores(frames: np.ndarray, seed: int = 0) -> np.ndarray:
    """What the built models must output, computed without TFLite."""
    w, b = fc_params(seed)
    logits = frames[:, :WIDTH].astype(np.float64) @ w.T.astype(np.float64) + b
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


class GraphBuilder:
    """Accumulates tensors, constant buffers and ops of a single-subgraph TFLite model."""

    def __init__(self) -> None:
        self.tensors: list[s.TensorT] = []
        self.buffers: list[s.BufferT] = [s.BufferT()]  # buffer 0 is the conventional empty one
        self.operators: list[s.OperatorT] = []
        self.opcodes: dict[int, int] = {}
        self.codes: list[s.OperatorCodeT] = []

    def tensor(
        self,
        name: str,
        shape: list[int],
        ttype: int = s.TensorType.FLOAT32,
        data: np.ndarray | None = None,
        signature: list[int] | None = None,
        scale: float | None = None,
    ) -> int:
        t = s.TensorT()
        t.name = name
        t.shape = np.asarray(shape, dtype=np.int32)
        t.type = ttype
        if signature is not None:
            t.shapeSignature = np.asarray(signature, dtype=np.int32)
        if data is not None:
            buf = s.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data, dtype=_NP_TYPES[ttype]).tobytes(), np.uint8)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        else:
            self.buffers.append(s.BufferT())
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale = np.asarray([scale], dtype=np.float32)
            q.zeroPoint = np.asarray([0], dtype=np.int64)
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const_i32(self, name: str, values: list[int]) -> int:
        return self.tensor(name, [len(values)], s.TensorType.INT32, np.asarray(values, np.int32))

    def op(
        self,
        code: int,
        inputs: list[int],
        outputs: list[int],
        options_type: int = 0,
        options: object = None,
    ) -> None:
        if code not in self.opcodes:
            oc = s.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            self.codes.append(oc)
            self.opcodes[code] = len(self.codes) - 1
        o = s.OperatorT()
        o.opcodeIndex = self.opcodes[code]
        o.inputs = np.asarray(inputs, dtype=np.int32)
        o.outputs = np.asarray(outputs, dtype=np.int32)
        o.builtinOptionsType = options_type
        o.builtinOptions = options
        self.operators.append(o)

    def reshape(self, src: int, name: str, shape: list[int], signature: list[int] | None = None) -> int:
        new_shape = signature if signature is not None else shape
        shape_t = self.const_i32(name + "/shape", new_shape)
        out = self.tensor(name, shape, signature=signature)
        opts = s.ReshapeOptionsT()
        opts.newShape = list(new_shape)
        self.op(s.BuiltinOperator.RESHAPE, [src, shape_t], [out], s.BuiltinOptions.ReshapeOptions, opts)
        return out

    def slice(self, src: int, name: str, begin: list[int], size: list[int], shape: list[int], signature=None) -> int:
        b = self.const_i32(name + "/begin", begin)
        z = self.const_i32(name + "/size", size)
        out = self.tensor(name, shape, signature=signature)
        self.op(s.BuiltinOperator.SLICE, [src, b, z], [out], s.BuiltinOptions.SliceOptions, s.SliceOptionsT())
        return out

    def dense_sigmoid(
        self, src: int, seed: int, classes: int, width: int, batch_sig: list[int] | None, int8_weights: bool
    ) -> tuple[int, int]:
        """FULLY_CONNECTED + LOGISTIC; returns (logits, scores) tensor indices."""
        w, b = fc_params(seed, classes, width)
        if int8_weights:  # hybrid model like the shared YAMNet: int8 weights, float activations
            scale = float(np.abs(w).max() / 127.0)
            wq = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
            w_t = self.tensor("dense/MatMul", [classes, width], s.TensorType.INT8, wq, scale=scale)
        else:
            w_t = self.tensor("dense/MatMul", [classes, width], data=w)
        b_t = self.tensor("dense/bias", [classes], data=b)
        sig = None if batch_sig is None else batch_sig + [classes]
        logits = self.tensor("dense/BiasAdd", [1, classes], signature=sig)
        self.op(
            s.BuiltinOperator.FULLY_CONNECTED,
            [src, w_t, b_t],
            [logits],
            s.BuiltinOptions.FullyConnectedOptions,
            s.FullyConnectedOptionsT(),
        )
        scores = self.tensor("scores", [1, classes], signature=sig)
        self.op(s.BuiltinOperator.LOGISTIC, [logits], [scores])
        return logits, scores

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        sg = s.SubGraphT()
        sg.tensors = self.tensors
        sg.inputs = np.asarray(inputs, dtype=np.int32)
        sg.outputs = np.asarray(outputs, dtype=np.int32)
        sg.operators = self.operators
        sg.name = "main"
        m = s.ModelT()
        m.version = 3
        m.operatorCodes = self.codes
        m.subgraphs = [sg]
        m.buffers = self.buffers
        m.description = "yamnet-beam test model"
        b = flatbuffers.Builder(1 << 16)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def variable_model(outputs: tuple[str, ...] = ("scores", "embeddings", "spectrogram"), seed: int = 0) -> bytes:
    """Like the TF-Hub export: waveform [-1] -> scores [N,521], embeddings [N,1024], spectrogram."""
    g = GraphBuilder()
    wav = g.tensor("waveform", [1], signature=[-1])
    frames = g.reshape(wav, "frames", [1, WINDOW], signature=[-1, WINDOW])
    emb = g.slice(frames, "embeddings", [0, 0], [-1, WIDTH], [1, WIDTH], signature=[-1, WIDTH])
    _, scores = g.dense_sigmoid(emb, seed, CLASSES, WIDTH, [-1], int8_weights=False)
    spec = g.slice(frames, "log_mel_spectrogram", [0, 0], [-1, 64], [1, 64], signature=[-1, 64])
    named = {"scores": scores, "embeddings": emb, "spectrogram": spec}
    return g.finish([wav], [named[o] for o in outputs])


def fixed_model(
    variant: str = "plain",
    seed: int = 0,
    classes: int = CLASSES,
    width: int = WIDTH,
    input_len: int = WINDOW,
    input_type: int = s.TensorType.FLOAT32,
    int8_weights: bool = False,
) -> bytes:
    """Like the shared model: input [1,15600], only scores (plus a decoy) as outputs.

    variant "plain": SLICE -> FC -> LOGISTIC (embedding = the SLICE output);
    "reshaped": the FC reads a RESHAPE of the embedding and its scores go through a RESHAPE to
    [521] before the output, so discovery must walk through both.
    """
    g = GraphBuilder()
    wav = g.tensor("input_1", [1, input_len], ttype=input_type)
    emb = g.slice(wav, "features/Mean", [0, 0], [1, width], [1, width])
    fc_in = emb
    if variant == "reshaped":
        fc_in = g.reshape(emb, "features/flatten", [1, 1, width])
    _, scores = g.dense_sigmoid(fc_in, seed, classes, width, None, int8_weights)
    if variant == "reshaped":
        scores = g.reshape(scores, "Identity", [classes])
    decoy = g.slice(wav, "Identity_1", [0, 0], [1, 64], [1, 64])
    return g.finish([wav], [scores, decoy])


def with_zip(model_bytes: bytes, files: dict[str, str]) -> bytes:
    """Append a zip of associated files, as TFLite metadata writers (MediaPipe) do."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return model_bytes + out.getvalue()


def to_large_model_format(model_bytes: bytes) -> bytes:
    """Move every constant buffer after the flatbuffer, referenced by (offset, size)."""
    m = s.ModelT.InitFromObj(s.Model.GetRootAsModel(model_bytes, 0))
    payloads = []
    for buf in m.buffers:
        if buf.data is not None and len(buf.data):
            payloads.append((buf, bytes(np.asarray(buf.data, np.uint8))))
            buf.data = None
            buf.offset, buf.size = 2, 2  # placeholders so the packed size is final

    def pack() -> bytes:
        b = flatbuffers.Builder(1 << 16)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    head = pack()
    pos = (len(head) + 15) // 16 * 16
    for buf, data in payloads:
        buf.offset, buf.size = pos, len(data)
        pos = (pos + len(data) + 15) // 16 * 16
    head = pack()
    out = bytearray(head)
    for buf, data in payloads:
        out.extend(b"\0" * (buf.offset - len(out)))
        out.extend(data)
    return bytes(out)
