"""Running YAMNet with LiteRT: the model bytes (read once per process), one interpreter per
:class:`YamnetModel` (not thread-safe: one per thread), scores and embeddings per frame.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Any

import numpy as np

from yamnet_beam.framing import WINDOW_SAMPLES
from yamnet_beam.model.graph import (
    DOWNLOAD_HINT,
    EMBEDDING_DIM,
    NUM_CLASSES,
    Graph,
    ModelError,
    analyse,
    find_label_file,
    inline_external_data,
    pack,
    parse,
)
from yamnet_beam.uris import local_or_url


@dataclass(frozen=True)
class ModelInfo:
    """What we learned from a model file; recorded with the output so results stay traceable."""

    uri: str
    sha256: str
    size_bytes: int
    kind: str
    num_classes: int
    embedding_dim: int
    embedding_tensor: str
    embedded_labels: tuple[str, ...] | None
    runtime: str
    embedded_labels_file: str | None = None


# --------------------------------------------------------------------------------------------
# Reading bytes (cached per process so each worker reads a model once)

_bytes_cache: dict[str, bytes] = {}
_bytes_lock = threading.Lock()


def read_model_bytes(uri: str) -> bytes:
    """Read a model from a local path or any fsspec URL, once per process per ``uri``."""
    with _bytes_lock:
        cached = _bytes_cache.get(uri)
        if cached is not None:
            return cached
        data = _read_uri(uri)
        _bytes_cache[uri] = data
        return data


def clear_model_cache() -> None:
    """Forget cached model bytes (tests, or a notebook after replacing a model file)."""
    with _bytes_lock:
        _bytes_cache.clear()
    _prepare.cache_clear()


def _read_uri(uri: str) -> bytes:
    import fsspec

    path = local_or_url(uri)
    try:
        with fsspec.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError as e:
        raise ModelError(f"model file not found: {uri}; {DOWNLOAD_HINT}") from e
    except IsADirectoryError as e:
        raise ModelError(f"model path is a directory, not a .tflite file: {uri}") from e
    except (OSError, ValueError, ImportError) as e:
        raise ModelError(f"could not read model {uri}: {e}") from e


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _interpreter_class() -> tuple[type, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, f"ai-edge-litert {_version('ai-edge-litert')}"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter, f"tflite-runtime {_version('tflite-runtime')}"
    except ImportError as e:
        raise ModelError("no TFLite interpreter is installed: pip install ai-edge-litert") from e


def _runtime_name() -> str:
    try:
        return _interpreter_class()[1]
    except ModelError:
        return "unavailable (pip install ai-edge-litert)"


@dataclass(frozen=True)
class _Prepared:
    graph: Graph
    sha256: str
    size_bytes: int
    runnable: bytes
    labels_file: str | None
    labels: tuple[str, ...] | None


@lru_cache(maxsize=4)
def _prepare(model_bytes: bytes) -> _Prepared:
    """Analyse once per distinct model so every thread's YamnetModel shares the work."""
    model = parse(model_bytes)
    graph = analyse(model)
    if graph.embedding_is_output:
        runnable = model_bytes
    else:
        inline_external_data(model, model_bytes)
        model.subgraphs[0].outputs = np.append(
            np.asarray(model.subgraphs[0].outputs, dtype=np.int32), np.int32(graph.embedding_index)
        )
        runnable = pack(model, len(model_bytes))
    found = find_label_file(model_bytes)
    return _Prepared(
        graph=graph,
        sha256=hashlib.sha256(model_bytes).hexdigest(),
        size_bytes=len(model_bytes),
        runnable=runnable,
        labels_file=found[0] if found else None,
        labels=found[1] if found else None,
    )


def _prepared(model_bytes: bytes) -> _Prepared:
    return _prepare(bytes(model_bytes))


def inspect_model(model_bytes: bytes, uri: str = "") -> ModelInfo:
    """Validate a model and describe it; raises :class:`ModelError` saying what is wrong."""
    p = _prepared(model_bytes)
    return ModelInfo(
        uri=uri,
        sha256=p.sha256,
        size_bytes=p.size_bytes,
        kind=p.graph.kind,
        num_classes=NUM_CLASSES,
        embedding_dim=EMBEDDING_DIM,
        embedding_tensor=p.graph.embedding_name,
        embedded_labels=p.labels,
        runtime=_runtime_name(),
        embedded_labels_file=p.labels_file,
    )


def expose_embedding(model_bytes: bytes) -> bytes:
    """Return model bytes whose subgraph outputs include the embedding (unchanged if already)."""
    return _prepared(model_bytes).runnable


def _output_reader(interp: Any, index: int, width: int) -> Callable[[np.ndarray], None]:
    """A function copying frame 0 of an output into a row, dequantizing int outputs if needed."""
    detail = next(d for d in interp.get_output_details() if d["index"] == index)
    view = interp.tensor(index)
    scale, zero = detail.get("quantization", (0.0, 0))
    if detail["dtype"] == np.float32:

        def read(row: np.ndarray) -> None:
            row[:] = view().reshape(-1, width)[0]

    elif scale:

        def read(row: np.ndarray) -> None:
            q = view().reshape(-1, width)[0].astype(np.float32)
            row[:] = (q - np.float32(zero)) * np.float32(scale)

    else:
        raise ModelError(f"output tensor {detail['name']!r} has unsupported type {detail['dtype']}")
    return read


class YamnetModel:
    """One interpreter over one model. Not thread-safe: create one instance per thread."""

    def __init__(self, model_bytes: bytes, uri: str = "", num_threads: int = 1) -> None:
        self.info = inspect_model(model_bytes, uri)
        prepared = _prepared(model_bytes)
        graph = prepared.graph
        interpreter_cls, _ = _interpreter_class()
        try:
            interp = interpreter_cls(model_content=prepared.runnable, num_threads=num_threads)
            if graph.kind == "variable":
                interp.resize_tensor_input(graph.input_index, [WINDOW_SAMPLES])
            interp.allocate_tensors()
        except ModelError:
            raise
        except (RuntimeError, ValueError) as e:
            raise ModelError(f"the TFLite runtime could not load {uri or 'the model'}: {e}") from e
        self._interp = interp
        self._input = interp.tensor(graph.input_index)
        self._read_scores = _output_reader(interp, graph.scores_index, NUM_CLASSES)
        self._read_embedding = _output_reader(interp, graph.embedding_index, EMBEDDING_DIM)

    @classmethod
    def from_uri(cls, uri: str, num_threads: int = 1) -> YamnetModel:
        """Build from a path or fsspec URL; the bytes are read once per process."""
        return cls(read_model_bytes(uri), uri=uri, num_threads=num_threads)

    def predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores [F, 521] and embeddings [F, 1024] (float32, owned copies) for frames [F, 15600]."""
        x = np.asarray(frames)
        if x.ndim != 2 or x.shape[1] != WINDOW_SAMPLES:
            raise ValueError(f"frames must have shape [F, {WINDOW_SAMPLES}], got {list(x.shape)}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = x.shape[0]
        scores = np.empty((n, NUM_CLASSES), dtype=np.float32)
        embeddings = np.empty((n, EMBEDDING_DIM), dtype=np.float32)
        invoke = self._interp.invoke
        for i in range(n):
            # The view must not outlive the call: the runtime may move buffers between invokes.
            self._input().reshape(-1)[:] = x[i]
            invoke()
            self._read_scores(scores[i])
            self._read_embedding(embeddings[i])
        return scores, embeddings
