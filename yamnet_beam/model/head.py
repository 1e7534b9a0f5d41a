"""The head file: a trained classifier on the 1024-D embedding as safe data (JSON + ``.npz``), never code.

``HEAD_DIR/head.json`` holds the classes, thresholds, activation, metrics, hyper-parameters, the YAMNet
SHA-256 and output fingerprint it was trained on, and the SHA-256 of ``HEAD_DIR/weights.npz``; the weights
load with ``allow_pickle=False``. A head whose weights do not match their recorded hash (edited, or mixed
with another head's files) is refused. The forward pass is plain numpy: ``x @ W + b``, ReLU between layers,
softmax (multi-class) or sigmoid (multi-label).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np

from yamnet_beam.errors import UserError
from yamnet_beam.model.graph import EMBEDDING_DIM, NUM_CLASSES

FORMAT = "yamnet-beam-head"
FORMAT_VERSION = 1
HEAD_JSON = "head.json"
WEIGHTS_NPZ = "weights.npz"
ACTIVATIONS = ("softmax", "sigmoid")
# An exported model's outputs are told apart by width (yamnet_beam.model.graph): a 1024-wide head output would be
# taken for the embedding, and a 521-wide head's label file for YAMNet's. So no head has that many classes.
FORBIDDEN_WIDTHS = (EMBEDDING_DIM, NUM_CLASSES)


class HeadError(UserError, ValueError):
    """A head directory that cannot be used as asked; the message says what to do."""


@dataclass
class Head:
    """A trained head: ``layers`` [(W [in, out], b [out])], ReLU between them, then ``activation``."""

    classes: list[str]
    layers: list[tuple[np.ndarray, np.ndarray]]
    activation: str
    thresholds: list[float]
    yamnet_sha256: str
    output_fingerprint: str = ""
    name: str = "head"
    metrics: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""  # of head.json as written: the head's identity in fingerprints and manifests

    def __post_init__(self) -> None:
        self.layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in self.layers]
        check(self)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """In float64: a float32 matmul rounds differently with the batch's size (BLAS blocking), which would
        make ``run --head`` (batches of a file's frames) and ``apply`` (whole row groups) disagree in the last
        bit; float64 rounded once to float32 at the end gives every frame the same scores however it is batched."""
        x = np.asarray(embeddings, dtype=np.float64)
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.astype(np.float64) + b.astype(np.float64)
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0)
        return x

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """``[F, 1024]`` embeddings (float32 or float16) -> ``[F, K]`` float32 class scores."""
        z = self.logits(embeddings)
        if self.activation == "softmax":
            z = np.exp(z - z.max(axis=1, keepdims=True))
            return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def check(head: Head) -> None:
    """Shapes, finiteness, classes and thresholds agree; raises :class:`HeadError` saying what is wrong."""
    if head.activation not in ACTIVATIONS:
        raise HeadError(f"activation must be one of {ACTIVATIONS}, got {head.activation!r}")
    names = [str(c) for c in head.classes]
    if len(names) < 2 and head.activation == "softmax":
        raise HeadError("a softmax head needs at least 2 classes")
    if len(set(names)) != len(names) or any(not c.strip() or "\n" in c or "\r" in c for c in names):
        raise HeadError("class names must be distinct, non-empty and one line each")
    if not head.layers:
        raise HeadError("a head needs at least one layer")
    width = EMBEDDING_DIM
    for i, (w, b) in enumerate(head.layers):
        if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
            raise HeadError(f"layer {i}: W must be [{width}, out] and b [out], got {list(w.shape)}, {list(b.shape)}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise HeadError(f"layer {i} holds NaN or inf: retrain the head")
        width = w.shape[1]
    if width != len(names):
        raise HeadError(f"the last layer has {width} outputs for {len(names)} classes")
    if len(head.thresholds) != len(names) or not all(0.0 <= t <= 1.0 for t in head.thresholds):
        raise HeadError(f"thresholds must be {len(names)} scores in [0, 1], one per class")


def _weights_bytes(layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> bytes:
    arrays = {}
    for i, (w, b) in enumerate(layers):
        arrays[f"w{i}"], arrays[f"b{i}"] = w, b
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _json_bytes(head: Head, weights_sha256: str) -> bytes:
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": head.name,
        "classes": list(head.classes),
        "activation": head.activation,
        "thresholds": [float(t) for t in head.thresholds],
        "layers": [[int(w.shape[0]), int(w.shape[1])] for w, _ in head.layers],
        "weights_file": WEIGHTS_NPZ,
        "weights_sha256": weights_sha256,
        "yamnet_sha256": head.yamnet_sha256,
        "output_fingerprint": head.output_fingerprint,
        "hyperparameters": head.hyperparameters,
        "metrics": head.metrics,
    }
    return (json.dumps(doc, indent=2, sort_keys=True, default=float) + "\n").encode()


def save_head(head: Head, head_dir: str) -> str:
    """Writes ``head.json`` and ``weights.npz`` into ``head_dir``; returns (and sets) the head's SHA-256."""
    fs, root = fsspec.core.url_to_fs(head_dir)
    root = root.rstrip("/")
    fs.makedirs(root, exist_ok=True)
    weights = _weights_bytes(head.layers)
    doc = _json_bytes(head, hashlib.sha256(weights).hexdigest())
    fs.pipe(f"{root}/{WEIGHTS_NPZ}", weights)
    fs.pipe(f"{root}/{HEAD_JSON}", doc)
    head.sha256 = hashlib.sha256(doc).hexdigest()
    return head.sha256


def load_head(head_dir: str, expected_sha256: str | None = None) -> Head:
    """Reads a head directory written by :func:`save_head`, checking that its weights are its own."""
    fs, root = fsspec.core.url_to_fs(head_dir)
    root = root.rstrip("/")
    hint = "pass a directory written by `yamnet-beam train` (it holds head.json and weights.npz)"
    try:
        raw = fs.cat_file(f"{root}/{HEAD_JSON}")
        doc = json.loads(raw)
    except FileNotFoundError as e:
        raise HeadError(f"{head_dir} has no {HEAD_JSON}: {hint}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise HeadError(f"{head_dir}/{HEAD_JSON} is not JSON ({e}): {hint}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise HeadError(f"{head_dir}/{HEAD_JSON} is not a yamnet-beam head file: {hint}")
    if doc.get("format_version") != FORMAT_VERSION:
        raise HeadError(
            f"{head_dir} is head format {doc.get('format_version')}, this yamnet-beam reads {FORMAT_VERSION}: "
            "retrain it with this version"
        )
    sha = hashlib.sha256(raw).hexdigest()
    if expected_sha256 and sha != expected_sha256:
        raise HeadError(f"{head_dir} changed since the job started (SHA-256 {sha}, expected {expected_sha256})")
    try:
        weights = fs.cat_file(f"{root}/{doc['weights_file']}")
    except (FileNotFoundError, KeyError) as e:
        raise HeadError(f"{head_dir} has no weights file ({e}): {hint}") from e
    if hashlib.sha256(weights).hexdigest() != doc.get("weights_sha256"):
        raise HeadError(
            f"{head_dir}/{doc['weights_file']} is not the weights {HEAD_JSON} was written with (SHA-256 differs): "
            "the head was edited or its files mixed with another head's; retrain it or restore both files together"
        )
    try:
        with np.load(io.BytesIO(weights), allow_pickle=False) as npz:
            layers = [(npz[f"w{i}"], npz[f"b{i}"]) for i in range(len(doc["layers"]))]
    except (ValueError, KeyError, OSError) as e:
        raise HeadError(f"{head_dir}/{doc['weights_file']} is not a head's weights ({e}): retrain it") from e
    head = Head(
        classes=list(doc["classes"]),
        layers=layers,
        activation=doc["activation"],
        thresholds=list(doc["thresholds"]),
        yamnet_sha256=doc["yamnet_sha256"],
        output_fingerprint=doc.get("output_fingerprint", ""),
        name=doc.get("name", "head"),
        metrics=doc.get("metrics", {}),
        hyperparameters=doc.get("hyperparameters", {}),
    )
    head.sha256 = sha
    return head


def check_model(head: Head, model_sha256: str, where: str) -> None:
    """Refuses a head trained on another YAMNet model's embeddings."""
    if head.yamnet_sha256 != model_sha256:
        raise HeadError(
            f"the head {head.name!r} was trained on embeddings of the model with SHA-256 {head.yamnet_sha256[:12]}..., "
            f"but {where} uses {model_sha256[:12]}...: its embeddings differ, so its scores would be meaningless. "
            "Use that model (--model), or retrain the head on an output of this one"
        )
