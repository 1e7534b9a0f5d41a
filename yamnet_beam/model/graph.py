"""Reading and rewriting the YAMNet flatbuffer: validation of YAMNet's signature, the structural search for
the scores and the embedding tensors (scores <- sigmoid <- fully-connected; its 1024-wide input is the
embedding), repacking, and label files packed into the model.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from yamnet_beam.errors import UserError
from yamnet_beam.framing import WINDOW_SAMPLES

NUM_CLASSES = 521  # YAMNet's signature: AudioSet classes
EMBEDDING_DIM = 1024

DOWNLOAD_HINT = (
    "run `yamnet-beam download` to fetch the official YAMNet TFLite model, "
    "or pass the path/URL of a YAMNet .tflite file"
)

# Ops that pass a tensor through unchanged in meaning (shape or numeric format only) while we walk
# from the scores output back to the classifier layer, and from its input back to the embedding.
_SCORE_PASSTHROUGH = {"LOGISTIC", "SOFTMAX", "RESHAPE", "SQUEEZE", "DEQUANTIZE", "QUANTIZE"}
_EMBEDDING_PASSTHROUGH = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "DEQUANTIZE", "QUANTIZE"}
_MAX_WALK = 16
# The output `yamnet-beam export` appends (yamnet_beam.customize.export): named here so that a model holding
# only it (`--custom_only`) is refused with the right hint rather than as "not YAMNet".
CUSTOM_SCORES_TENSOR = "custom_scores"


class ModelError(UserError, ValueError):
    """The model cannot be read or is not a usable YAMNet model; the message says what to do."""


# Runtime and schema


def flatbuffer_schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError as e:
            raise ModelError(
                "reading a TFLite model needs the flatbuffer schema shipped with LiteRT: pip install ai-edge-litert"
            ) from e
    return schema


@lru_cache(maxsize=1)
def _op_names() -> dict[int, str]:
    ops = flatbuffer_schema().BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


@lru_cache(maxsize=1)
def _type_names() -> dict[int, str]:
    types = flatbuffer_schema().TensorType
    return {v: k for k, v in vars(types).items() if not k.startswith("_") and isinstance(v, int)}


# --------------------------------------------------------------------------------------------
# Static analysis of the flatbuffer


@dataclass(frozen=True)
class Graph:
    kind: str
    input_index: int
    scores_index: int
    embedding_index: int
    embedding_is_output: bool
    embedding_name: str


def parse(model_bytes: bytes) -> Any:
    """Parse the flatbuffer into the schema's object API, failing with a readable message."""
    if not isinstance(model_bytes, (bytes, bytearray, memoryview)):
        raise TypeError(f"model_bytes must be bytes, got {type(model_bytes).__name__}")
    buf = bytes(model_bytes)
    if not buf:
        raise ModelError(f"the model file is empty; {DOWNLOAD_HINT}")
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        head = buf[:16]
        raise ModelError(
            f"not a TFLite model: no 'TFL3' flatbuffer identifier ({len(buf)} bytes, "
            f"starting {head!r}); {DOWNLOAD_HINT}"
        )
    schema = flatbuffer_schema()
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    except Exception as e:  # corrupt flatbuffers fail with assorted low-level errors
        detail = f"{type(e).__name__}: {e}"[:200]
        raise ModelError(f"corrupt TFLite model ({detail}); {DOWNLOAD_HINT}") from e
    if not model.subgraphs:
        raise ModelError(f"corrupt TFLite model: it has no subgraph; {DOWNLOAD_HINT}")
    return model


def dims(tensor: Any) -> list[int]:
    """A tensor's shape, -1 for dynamic dims (from its shape signature when it has one)."""
    sig = tensor.shapeSignature
    shape = sig if sig is not None and len(sig) else tensor.shape
    return [] if shape is None else [int(d) for d in shape]


def tensor_name(tensor: Any) -> str:
    """A tensor's name as text."""
    n = tensor.name
    return n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n or "")


def _describe(tensor: Any) -> str:
    return f"{tensor_name(tensor)!r} {dims(tensor)} {_type_names().get(tensor.type, tensor.type)}"


def _per_frame_width(tensor: Any) -> int | None:
    """Last dim if all leading dims are batch-like (1 or dynamic), else None."""
    shape = dims(tensor)
    if not shape or any(d not in (1, -1) for d in shape[:-1]):
        return None
    return shape[-1]


def op_name(model: Any, op: Any) -> str:
    """An operator's builtin name, e.g. ``"CONV_2D"`` (``"OP<code>"`` for codes this schema does not name)."""
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    return _op_names().get(builtin, f"OP{builtin}")


def analyse(model: Any) -> Graph:
    sg = model.subgraphs[0]
    tensors = sg.tensors
    inputs = [] if sg.inputs is None else [int(i) for i in sg.inputs]
    outputs = [] if sg.outputs is None else [int(i) for i in sg.outputs]
    float32 = flatbuffer_schema().TensorType.FLOAT32

    if len(inputs) != 1:
        raise ModelError(
            f"wrong model signature: expected one waveform input, found {len(inputs)}; "
            f"a YAMNet model takes float32 [1, {WINDOW_SAMPLES}] or [-1]. {DOWNLOAD_HINT}"
        )
    inp = tensors[inputs[0]]
    shape = dims(inp)
    if inp.type == float32 and shape == [-1]:
        kind = "variable"
    elif inp.type == float32 and shape and shape[-1] == WINDOW_SAMPLES and all(d in (1, -1) for d in shape[:-1]):
        kind = "fixed"
    else:
        raise ModelError(
            f"wrong model signature: input {_describe(inp)}; a YAMNet model takes a float32 "
            f"waveform of shape [1, {WINDOW_SAMPLES}] (0.975 s at 16 kHz) or [-1]. {DOWNLOAD_HINT}"
        )

    out_desc = ", ".join(_describe(tensors[i]) for i in outputs) or "none"
    scores = next((i for i in outputs if _per_frame_width(tensors[i]) == NUM_CLASSES), None)
    if scores is None and any(tensor_name(tensors[i]) == CUSTOM_SCORES_TENSOR for i in outputs):
        raise ModelError(
            f"this model's only output is a custom head's scores (outputs: {out_desc}): it was exported with "
            "`yamnet-beam export --custom_only`, for devices. The pipeline needs YAMNet's scores and embedding: "
            "export the head without --custom_only, or pass the YAMNet model it was trained on (and --head)"
        )
    if scores is None:
        raise ModelError(
            f"no {NUM_CLASSES}-wide scores output (outputs: {out_desc}); this is not a YAMNet "
            f"AudioSet classifier. {DOWNLOAD_HINT}"
        )
    emb_out = next((i for i in outputs if _per_frame_width(tensors[i]) == EMBEDDING_DIM), None)
    if emb_out is not None:
        return Graph(kind, inputs[0], scores, emb_out, True, tensor_name(tensors[emb_out]))

    producer = {}
    for op in sg.operators or []:
        for o in op.outputs if op.outputs is not None else []:
            producer[int(o)] = op

    fc = None
    idx = scores
    for _ in range(_MAX_WALK):
        op = producer.get(idx)
        if op is None:
            break
        name = op_name(model, op)
        if name == "FULLY_CONNECTED":
            fc = op
            break
        if name not in _SCORE_PASSTHROUGH:
            break
        idx = int(op.inputs[0])

    emb = None
    if fc is not None:
        idx = int(fc.inputs[0])
        fallback = None
        for _ in range(_MAX_WALK):
            t = tensors[idx]
            if _per_frame_width(t) == EMBEDDING_DIM:
                if t.type == float32:
                    emb = idx
                    break
                fallback = idx if fallback is None else fallback
            op = producer.get(idx)
            if op is None or op_name(model, op) not in _EMBEDDING_PASSTHROUGH:
                break
            idx = int(op.inputs[0])
        emb = emb if emb is not None else fallback
    if emb is None:
        raise ModelError(
            f"no {EMBEDDING_DIM}-D embedding found: the scores output {_describe(tensors[scores])} "
            f"is not computed by a fully-connected layer over a {EMBEDDING_DIM}-wide tensor, and no "
            f"output is {EMBEDDING_DIM} wide. {DOWNLOAD_HINT}"
        )
    return Graph(kind, inputs[0], scores, emb, False, tensor_name(tensors[emb]))


# --------------------------------------------------------------------------------------------
# Flatbuffer rewrite


def inline_external_data(model: Any, original: bytes) -> None:
    """Copy data stored after the flatbuffer (large-model format) back into the flatbuffer.

    Offsets in that format are relative to the start of the file; repacking moves everything,
    so the data must travel inside the new flatbuffer.
    """
    if model.externalBuffers or model.externalBufferGroups:
        raise ModelError(
            "this TFLite model keeps its weights in separate external files, which cannot be "
            "loaded from memory; use a single-file .tflite export"
        )
    for buf in model.buffers or []:
        if buf.offset and buf.offset > 1:
            end = int(buf.offset) + int(buf.size)
            if end > len(original):
                raise ModelError("corrupt TFLite model: a weight buffer points past the end of file")
            buf.data = np.frombuffer(original, np.uint8, count=int(buf.size), offset=int(buf.offset))
            buf.offset = 0
            buf.size = 0
    for sg in model.subgraphs:
        for op in sg.operators or []:
            if op.largeCustomOptionsOffset and op.largeCustomOptionsOffset > 1:
                start = int(op.largeCustomOptionsOffset)
                op.customOptions = np.frombuffer(original, np.uint8, count=int(op.largeCustomOptionsSize), offset=start)
                op.largeCustomOptionsOffset = 0
                op.largeCustomOptionsSize = 0


def _aligned_buffers(model: Any) -> None:
    """Make weight buffers pack 16-byte aligned, as the TFLite converter writes them."""
    schema = flatbuffer_schema()

    class _AlignedBufferT(schema.BufferT):
        def Pack(self, builder: Any) -> int:  # noqa: N802 - flatbuffers naming
            data = None
            if self.data is not None:
                payload = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(payload), 16)
                builder.head = builder.head - len(payload)
                builder.Bytes[builder.head : builder.head + len(payload)] = payload
                builder.vectorNumElems = len(payload)
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    new = []
    for b in model.buffers or []:
        a = _AlignedBufferT()
        a.data, a.offset, a.size = b.data, b.offset, b.size
        new.append(a)
    model.buffers = new


def pack(model: Any, size_hint: int) -> bytes:
    import flatbuffers

    _aligned_buffers(model)
    builder = flatbuffers.Builder(size_hint + 4096)
    try:
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    except Exception as e:  # e.g. flatbuffers' 2 GiB limit
        raise ModelError(f"could not rewrite the model to expose its embedding: {e}") from e
    return bytes(builder.Output())


# --------------------------------------------------------------------------------------------
# Labels packed in the model (TFLite metadata associated files, a zip appended to the file)


def _label_names(text: str, is_csv: bool) -> tuple[str, ...]:
    if not is_csv:
        lines = text.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        return tuple(line.strip() for line in lines)
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if rows and "display_name" in [c.strip() for c in rows[0]]:
        col = [c.strip() for c in rows[0]].index("display_name")
        return tuple(r[col].strip() if col < len(r) else "" for r in rows[1:])
    return tuple(r[-1].strip() for r in rows)


def find_label_file(model_bytes: bytes) -> tuple[str, tuple[str, ...]] | None:
    if b"PK\x05\x06" not in model_bytes[-(65536 + 22) :]:  # no zip end-of-directory record
        return None
    try:
        zf = zipfile.ZipFile(io.BytesIO(model_bytes))
        entries = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    candidates = []
    for entry in entries:
        lower = entry.filename.lower()
        if entry.is_dir() or not lower.endswith((".txt", ".csv")):
            continue
        try:
            text = zf.read(entry).decode("utf-8-sig")
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
            continue
        names = _label_names(text, lower.endswith(".csv"))
        if len(names) == NUM_CLASSES and all(names):
            candidates.append(("label" not in lower, entry.filename, names))
    if not candidates:
        return None
    _, filename, names = min(candidates, key=lambda c: (c[0], c[1]))
    return filename, names


# --------------------------------------------------------------------------------------------
# Inference
