"""Export YAMNet plus a trained custom head as one .tflite that MediaPipe's AudioClassifier runs on devices.

No Beam, no TensorFlow and no MediaPipe here: the head is appended to the YAMNet flatbuffer with LiteRT's
schema object API (as :mod:`yamnet_beam.model` does to expose the embedding), and the TFLite metadata that
MediaPipe requires is written with the plain ``flatbuffers`` builder against the field layout of
``metadata_schema.fbs`` (MediaPipe ships that schema; its generated Python module is a test-only check).

Output layout: subgraph outputs ``[yamnet scores [1, 521], custom scores [1, K]]`` (or only the custom one),
metadata heads named ``yamnet`` and ``custom``, label files (and a score-calibration file carrying per-class
thresholds) in a zip appended to the model, as MediaPipe's metadata populator lays them out.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from typing import Any

import flatbuffers
import numpy as np

from yamnet_beam.model import NUM_CLASSES, ModelError, inspect_model, read_model_bytes
from yamnet_beam.model.download import default_model_uri, resolve_class_map
from yamnet_beam.model.graph import CUSTOM_SCORES_TENSOR
from yamnet_beam.model.graph import analyse as _analyse
from yamnet_beam.model.graph import flatbuffer_schema as _schema
from yamnet_beam.model.graph import inline_external_data as _inline_external_data
from yamnet_beam.model.graph import pack as _pack
from yamnet_beam.model.graph import parse as _parse
from yamnet_beam.model.head import FORBIDDEN_WIDTHS, Head, check_model, load_head
from yamnet_beam.model.labels import resolve_labels
from yamnet_beam.uris import absolute_uri

SAMPLE_RATE = 16000
YAMNET_LABELS_FILE = "yamnet_label_list.txt"
CUSTOM_LABELS_FILE = "custom_labels.txt"
CUSTOM_CALIBRATION_FILE = "custom_score_calibration.txt"
METADATA_NAME = b"TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
# AudioProperties came with metadata schema 1.3.0; nothing newer is written.
MIN_PARSER_VERSION = "1.3.0"
# Score a thresholded class gets below its threshold. Measured with mediapipe 1.2.3: the classifier keeps
# scores >= the metadata's global threshold (0.0 here) unless the caller passes a positive score_threshold,
# so -1 is never reported, whatever the caller's option; a 0.0 default would be reported as 0.0.
BELOW_THRESHOLD_SCORE = -1.0

_ACTIVATION_OPS = {"softmax": "SOFTMAX", "sigmoid": "LOGISTIC"}  # head.ACTIVATIONS -> builtin op


# --------------------------------------------------------------------------------------------
# Validation


def _check_labels(labels: Sequence[str] | None, n: int, what: str) -> list[str]:
    """Labels for a label file: ``n`` non-empty one-line names (the head's own are checked by :class:`Head`)."""
    if labels is None or isinstance(labels, str) or len(labels) != n:
        got = "none" if labels is None else ("a string" if isinstance(labels, str) else len(labels))
        raise ValueError(f"{what} needs {n} labels (one per class), got {got}")
    raw = [str(x) for x in labels]
    bad = [i for i, x in enumerate(raw) if not x.strip() or "\n" in x or "\r" in x]
    if bad:
        raise ValueError(f"{what}: label(s) at {bad[:5]} are empty or contain a line break; use one-line names")
    return [x.strip() for x in raw]


# --------------------------------------------------------------------------------------------
# Graph: append FULLY_CONNECTED (+ReLU) layers and SOFTMAX/LOGISTIC on the embedding


def _opcode(model: Any, name: str) -> int:
    """Index of the operator code for builtin ``name``, added (version 1) if the model has none."""
    schema = _schema()
    code = getattr(schema.BuiltinOperator, name)
    for i, oc in enumerate(model.operatorCodes):
        if max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)) == code:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _tensor(model: Any, sg: Any, name: str, shape: list[int], data: np.ndarray | None = None) -> int:
    """Add a float32 tensor; constants get their own buffer, activations buffer 0 (the empty sentinel).

    A buffer whose data is an empty vector counts as a constant and LiteRT rejects the tensor.
    """
    schema = _schema()
    t = schema.TensorT()
    t.name, t.shape, t.type = name.encode(), np.asarray(shape, dtype=np.int32), schema.TensorType.FLOAT32
    t.buffer = 0
    if data is not None:
        buf = schema.BufferT()
        buf.data = np.frombuffer(np.ascontiguousarray(data, dtype="<f4").tobytes(), dtype=np.uint8)
        model.buffers.append(buf)
        t.buffer = len(model.buffers) - 1
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _add_op(model: Any, sg: Any, name: str, inputs: list[int], outputs: list[int], options: Any = None) -> None:
    schema = _schema()
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(model, name)
    op.inputs, op.outputs = np.asarray(inputs, dtype=np.int32), np.asarray(outputs, dtype=np.int32)
    if options is not None:
        op.builtinOptionsType = getattr(schema.BuiltinOptions, type(options).__name__[:-1])  # FooOptionsT -> FooOptions
        op.builtinOptions = options
    sg.operators.append(op)


def _append_layers(model: Any, sg: Any, x: int, layers: list[tuple[np.ndarray, np.ndarray]], activation: str) -> int:
    schema = _schema()
    for i, (w, b) in enumerate(layers):
        last = i == len(layers) - 1
        wt = _tensor(model, sg, f"custom_head/dense_{i}/weights", [w.shape[1], w.shape[0]], w.T)  # FC wants [out, in]
        bt = _tensor(model, sg, f"custom_head/dense_{i}/bias", [w.shape[1]], b)
        y = _tensor(model, sg, f"custom_head/dense_{i}/{'logits' if last else 'relu'}", [1, w.shape[1]])
        opts = schema.FullyConnectedOptionsT()
        opts.fusedActivationFunction = (
            schema.ActivationFunctionType.NONE if last else schema.ActivationFunctionType.RELU
        )
        _add_op(model, sg, "FULLY_CONNECTED", [x, wt, bt], [y], opts)
        x = y
    out = _tensor(model, sg, CUSTOM_SCORES_TENSOR, [1, layers[-1][0].shape[1]])
    opts = None
    if activation == "softmax":
        opts = schema.SoftmaxOptionsT()
        opts.beta = 1.0  # the object API's default is 0.0, which would make every class equally likely
    _add_op(model, sg, _ACTIVATION_OPS[activation], [x], [out], opts)
    return out


# --------------------------------------------------------------------------------------------
# TFLite metadata (metadata_schema.fbs 1.5.0, identifier M001), written field by field.
# Slot numbers are the fields' order in the schema; a union takes two slots (type, value).

_ASSOCIATED_FILE_TENSOR_AXIS_LABELS = 2
_ASSOCIATED_FILE_TENSOR_AXIS_SCORE_CALIBRATION = 4
_CONTENT_PROPERTIES_FEATURE = 1
_CONTENT_PROPERTIES_AUDIO = 4
_PROCESS_UNIT_SCORE_CALIBRATION = 2
_PROCESS_UNIT_SCORE_THRESHOLDING = 3
_SCORE_TRANSFORMATION_INVERSE_LOGISTIC = 2


class _Meta:
    """Tiny helper over flatbuffers.Builder: children are built before the table that points to them."""

    def __init__(self) -> None:
        self.b = flatbuffers.Builder(1024)

    def s(self, text: str | None) -> int | None:
        return None if text is None else self.b.CreateString(text)

    def vec(self, offsets: list[int]) -> int:
        self.b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            self.b.PrependUOffsetTRelative(off)
        return self.b.EndVector()

    def table(self, *fields: tuple[int, str, Any]) -> int:
        """fields: (slot, kind, value) with kind off/u8/i8/u32/f32; None values are left out."""
        b = self.b
        add = {
            "off": b.PrependUOffsetTRelativeSlot,
            "u8": b.PrependUint8Slot,
            "i8": b.PrependInt8Slot,
            "u32": b.PrependUint32Slot,
            "f32": b.PrependFloat32Slot,
        }
        b.StartObject(max(slot for slot, _, _ in fields) + 1)
        for slot, kind, value in fields:
            if value is not None:
                add[kind](slot, value, 0)
        return b.EndObject()

    def empty(self) -> int:
        self.b.StartObject(0)
        return self.b.EndObject()

    def associated_file(self, name: str, kind: int, description: str) -> int:
        n, d = self.s(name), self.s(description)
        return self.table((0, "off", n), (1, "off", d), (2, "i8", kind))  # name, description, type

    def content(self, props_type: int, props: int) -> int:
        return self.table((0, "u8", props_type), (1, "off", props))  # content_properties (union)

    def process_unit(self, options_type: int, options: int) -> int:
        return self.table((0, "u8", options_type), (1, "off", options))  # options (union)

    def tensor(
        self, name: str, description: str, content: int, files: list[int], units: list[int] | None = None
    ) -> int:
        n, d = self.s(name), self.s(description)
        pu = self.vec(units) if units else None
        af = self.vec(files) if files else None
        # name, description, dimension_names, content, process_units, stats, associated_files
        return self.table((0, "off", n), (1, "off", d), (3, "off", content), (4, "off", pu), (6, "off", af))

    def finish(self, root: int) -> bytes:
        self.b.Finish(root, file_identifier=METADATA_IDENTIFIER)
        return bytes(self.b.Output())


def _output_metadata(m: _Meta, name: str, description: str, labels_file: str, thresholds: list[float] | None) -> int:
    feature = m.content(_CONTENT_PROPERTIES_FEATURE, m.empty())
    files = [m.associated_file(labels_file, _ASSOCIATED_FILE_TENSOR_AXIS_LABELS, f"Labels of the {name} head")]
    units = None
    if thresholds is not None:
        files.append(
            m.associated_file(
                CUSTOM_CALIBRATION_FILE,
                _ASSOCIATED_FILE_TENSOR_AXIS_SCORE_CALIBRATION,
                "Per-class thresholds as score-calibration min_score (scale 1, slope 1, offset 0: scores unchanged)",
            )
        )
        # ScoreCalibrationOptions: score_transformation, default_score
        calib = m.table((0, "i8", _SCORE_TRANSFORMATION_INVERSE_LOGISTIC), (1, "f32", BELOW_THRESHOLD_SCORE))
        # ScoreThresholdingOptions: global_score_threshold (0 keeps every class at or above its own threshold)
        thresh = m.table((0, "f32", 0.0))
        units = [
            m.process_unit(_PROCESS_UNIT_SCORE_CALIBRATION, calib),
            m.process_unit(_PROCESS_UNIT_SCORE_THRESHOLDING, thresh),
        ]
    return m.tensor(name, description, feature, files, units)


def build_metadata(
    num_custom: int, activation: str, thresholds: list[float] | None, custom_only: bool, description: str
) -> bytes:
    """The ModelMetadata flatbuffer MediaPipe's AudioClassifier needs: AudioProperties and one head per output."""
    m = _Meta()
    audio = m.table((0, "u32", SAMPLE_RATE), (1, "u32", 1))  # AudioProperties: sample_rate, channels
    inp = m.tensor(
        "audio_clip",
        f"{SAMPLE_RATE} Hz mono float32 waveform in [-1, 1], 0.975 s (15600 samples) per inference",
        m.content(_CONTENT_PROPERTIES_AUDIO, audio),
        [],
    )
    outputs = []
    if not custom_only:
        outputs.append(
            _output_metadata(m, "yamnet", f"{NUM_CLASSES} AudioSet class scores (sigmoid)", YAMNET_LABELS_FILE, None)
        )
    kind = "softmax, multi-class" if activation == "softmax" else "sigmoid, multi-label"
    outputs.append(
        _output_metadata(m, "custom", f"{num_custom} custom class scores ({kind})", CUSTOM_LABELS_FILE, thresholds)
    )
    sg_name, sg_desc = m.s("yamnet_custom"), m.s(description)
    inputs_v, outputs_v = m.vec([inp]), m.vec(outputs)
    # SubGraphMetadata: name, description, input_tensor_metadata, output_tensor_metadata
    sub = m.table((0, "off", sg_name), (1, "off", sg_desc), (2, "off", inputs_v), (3, "off", outputs_v))
    name, desc, version, subs = m.s("YAMNet with a custom head"), m.s(description), m.s("1"), m.vec([sub])
    license_, mpv = m.s("Apache-2.0 (YAMNet); custom head: see its training data"), m.s(MIN_PARSER_VERSION)
    # ModelMetadata: name, description, version, subgraph_metadata, author, license, associated_files, min_parser
    root = m.table(
        (0, "off", name), (1, "off", desc), (2, "off", version), (3, "off", subs), (5, "off", license_), (7, "off", mpv)
    )
    return m.finish(root)


def _label_zip(model: bytes, files: dict[str, str]) -> bytes:
    """Append the associated files as an uncompressed zip, as MediaPipe's metadata populator does."""
    out = io.BytesIO()
    out.write(model)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
        for name, text in files.items():
            zf.writestr(name, text.encode("utf-8"))
    return out.getvalue()


def _calibration_text(thresholds: list[float]) -> str:
    # scale,slope,offset,min_score per class: identity on INVERSE_LOGISTIC-transformed scores, and any score
    # below min_score becomes default_score (BELOW_THRESHOLD_SCORE). repr() of a float32 round-trips exactly.
    # No trailing newline: MediaPipe splits on "\n" and would count an empty last line as a class.
    return "\n".join(f"1.0,1.0,0.0,{t!r}" for t in thresholds)


# --------------------------------------------------------------------------------------------


def append_head(
    model_bytes: bytes, head: Head, labels_yamnet: Sequence[str] | None, custom_only: bool = False
) -> bytes:
    """YAMNet + ``head`` as one .tflite with MediaPipe metadata.

    The head's layers (ReLU between them) go on the 1024-D embedding, then SOFTMAX (multi-class) or LOGISTIC
    (multi-label); its thresholds go into the metadata, so MediaPipe reports only classes at or above their
    threshold (see ``_calibration_text``). ``labels_yamnet``: YAMNet's 521 names (not needed with ``custom_only``).
    """
    layers, k = head.layers, head.num_classes
    if k in FORBIDDEN_WIDTHS:
        raise ValueError(f"a head with {k} classes cannot be exported: merge or drop a class")
    yamnet = None if custom_only else _check_labels(labels_yamnet, NUM_CLASSES, "labels_yamnet")
    cuts = [float(np.float32(t)) for t in head.thresholds]  # what MediaPipe (float32) compares against

    model = _parse(model_bytes)
    graph = _analyse(model)
    if graph.kind != "fixed":
        raise ModelError(
            "exporting for devices needs the fixed-input YAMNet (float32 [1, 15600]); this model takes a "
            "variable-length waveform. Use the official yamnet.tflite (`yamnet-beam download`)"
        )
    if len(model.subgraphs) != 1:
        raise ModelError(f"expected one subgraph, found {len(model.subgraphs)}; MediaPipe runs single-subgraph models")
    if model.buffers[0].data is not None and len(model.buffers[0].data):
        raise ModelError("buffer 0 holds data; this is not a converter-written TFLite model")
    _inline_external_data(model, bytes(model_bytes))
    sg = model.subgraphs[0]
    out = _append_layers(model, sg, graph.embedding_index, layers, head.activation)
    sg.outputs = np.asarray([out] if custom_only else [graph.scores_index, out], dtype=np.int32)
    if model.signatureDefs:
        schema = _schema()
        maps = []
        for key, idx in ([] if custom_only else [("yamnet", graph.scores_index)]) + [("custom", out)]:
            tm = schema.TensorMapT()
            tm.name, tm.tensorIndex = key.encode(), idx
            maps.append(tm)
        for sd in model.signatureDefs:
            sd.outputs = maps

    description = f"YAMNet (AudioSet, {NUM_CLASSES} classes) with a custom {len(layers)}-layer {head.activation} head"
    meta = build_metadata(k, head.activation, cuts, custom_only, description)
    schema = _schema()
    buf = schema.BufferT()
    buf.data = np.frombuffer(meta, dtype=np.uint8)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [e for e in (model.metadata or []) if e.name != METADATA_NAME] + [entry]

    packed = _pack(model, len(model_bytes) + sum(w.nbytes + b.nbytes for w, b in layers) + len(meta))
    files = {} if custom_only else {YAMNET_LABELS_FILE: "\n".join(yamnet) + "\n"}
    files[CUSTOM_LABELS_FILE] = "\n".join(head.classes) + "\n"
    files[CUSTOM_CALIBRATION_FILE] = _calibration_text(cuts)
    return _label_zip(packed, files)


def _trained_on_model(head_dir: str) -> str | None:
    """The model the head's training run used (``metrics.json`` records its output's model URI), if still there."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(absolute_uri(head_dir))
    try:
        recorded = json.loads(fs.cat_file(f"{root.rstrip('/')}/metrics.json")).get("trained_on", {}).get("model_uri")
    except (OSError, ValueError, AttributeError):
        return None
    if not recorded:
        return None
    mfs, path = fsspec.core.url_to_fs(recorded)
    return recorded if mfs.exists(path) else None


def export_head(
    head_dir: str,
    dest: str,
    model_uri: str | None = None,
    class_map_uri: str | None = None,
    custom_only: bool = False,
) -> str:
    """``yamnet-beam export``: the head's YAMNet (checked by SHA-256) with the head appended, written to ``dest``."""
    import fsspec

    head = load_head(absolute_uri(head_dir))
    uri = absolute_uri(model_uri or _trained_on_model(head_dir) or default_model_uri())
    model_bytes = read_model_bytes(uri)
    info = inspect_model(model_bytes, uri=uri)
    check_model(head, info.sha256, f"--model {uri}")
    labels = None
    if not custom_only:
        labels = resolve_labels(info, resolve_class_map(class_map_uri, uri)).names
    out = append_head(bytes(model_bytes), head, labels, custom_only)
    fs, path = fsspec.core.url_to_fs(absolute_uri(dest))
    fs.pipe(path, out)
    return dest
