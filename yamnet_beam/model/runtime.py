"""Running YAMNet with LiteRT: the model bytes (read once per process), one :class:`YamnetModel` per
thread (interpreters are not thread-safe), scores and embeddings per frame or batched (:mod:`.batched`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from yamnet_beam.framing import HOP_SAMPLES, WINDOW_SAMPLES, StreamFramer, frame_signal
from yamnet_beam.model import split
from yamnet_beam.model.batched import (
    DEFAULT_BATCH,
    BatchedYamnet,
    FrameStream,
    batches_well,
    per_frame_stream,
    probe_signal,
)
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
from yamnet_beam.model.litert import make_interpreter, runtime_name
from yamnet_beam.model.multifile import MultiFileStream, per_frame_multi_stream
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
    _verdicts.clear()
    split.clear_cache()


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
        runtime=runtime_name(),
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


class _FrameInterpreter:
    """The whole model on one interpreter, one ``invoke()`` per [1, 15600] frame."""

    def __init__(self, prepared: _Prepared, num_threads: int, uri: str) -> None:
        graph = prepared.graph
        interp = make_interpreter(prepared.runnable, num_threads, uri or "the model")
        try:
            if graph.kind == "variable":
                interp.resize_tensor_input(graph.input_index, [WINDOW_SAMPLES])
            interp.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            raise ModelError(f"the TFLite runtime could not load {uri or 'the model'}: {e}") from e
        self._interp = interp
        self._input = interp.tensor(graph.input_index)
        self._read_scores = _output_reader(interp, graph.scores_index, NUM_CLASSES)
        self._read_embedding = _output_reader(interp, graph.embedding_index, EMBEDDING_DIM)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


class YamnetModel:
    """One model on LiteRT: per-frame ``invoke()`` (:meth:`predict`) and, where the graph allows, the
    batched path (:meth:`embed`, :meth:`stream`). Not thread-safe: create one instance per thread.

    ``batched`` (default): also build the front-end/CNN subgraphs of :mod:`.batched` when the graph
    has the known structure and they reproduce per-frame ``invoke()`` bit for bit on probe audio
    (:attr:`has_batched_path`). :meth:`inference` says which path :meth:`embed` and :meth:`stream`
    take at a hop (``"batched"`` where frames share STFT rows, else ``"per_frame"``). Both give the
    same numbers, so callers need not care.

    Memory: with the batched path, the whole-model interpreter (37 MB measured) is built only to
    verify it, once per process and model, and freed before the subgraphs are built; :meth:`predict`
    rebuilds it if called.
    """

    def __init__(self, model_bytes: bytes, uri: str = "", num_threads: int = 1, batched: bool = True) -> None:
        self.info = inspect_model(model_bytes, uri)
        self._prepared, self._num_threads, self._uri = _prepared(model_bytes), num_threads, uri
        self._frames: _FrameInterpreter | None = None
        self._batched: BatchedYamnet | None = None
        key = (self.info.sha256, num_threads)
        if batched and split.find_split(model_bytes) is not None and _verdicts.get(key, True):
            if key in _verdicts:
                self._batched = BatchedYamnet(model_bytes, num_threads)
            else:
                expected = self._frame_interpreter().predict(frame_signal(probe_signal()))
                self._frames = None  # freed before the subgraphs are built: peak memory is one of them
                self._batched = BatchedYamnet.create(model_bytes, expected, num_threads)
                _verdicts[key] = self._batched is not None
        self.has_batched_path = self._batched is not None
        if self._batched is None:
            self._frame_interpreter()  # built now, so that a model the runtime cannot load fails here

    @classmethod
    def from_uri(cls, uri: str, num_threads: int = 1, batched: bool = True) -> YamnetModel:
        """Build from a path or fsspec URL; the bytes are read once per process."""
        return cls(read_model_bytes(uri), uri=uri, num_threads=num_threads, batched=batched)

    def embed(
        self, x: np.ndarray, hop_samples: int = HOP_SAMPLES, batch: int = DEFAULT_BATCH
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores [F, 521] and embeddings [F, 1024] of a 1-D 16 kHz signal (framed as
        :func:`~yamnet_beam.framing.frame_signal` frames it) or of ``[F, 15600]`` frames."""
        a = np.asarray(x, dtype=np.float32)
        if a.ndim == 2 and a.shape[1] == WINDOW_SAMPLES:
            return self.predict(a)  # frames given apart share no STFT rows: nothing to gain from the split
        if a.ndim != 1:
            raise ValueError(f"expected a 1-D 16 kHz waveform or [F, {WINDOW_SAMPLES}] frames, got {list(a.shape)}")
        stream = self.stream(hop_samples, batch)
        results = [*stream.push(a), *stream.finish()]
        return np.concatenate([r.scores for r in results]), np.concatenate([r.embeddings for r in results])

    def inference(self, hop_samples: int = HOP_SAMPLES) -> str:
        """The path :meth:`embed` and :meth:`stream` take at this hop: ``"batched"`` or ``"per_frame"``."""
        if self._batched is not None and batches_well(self._batched.points, hop_samples):
            return "batched"
        return "per_frame"

    def stream(self, hop_samples: int = HOP_SAMPLES, batch: int = DEFAULT_BATCH) -> FrameStream:
        """Blocks of one signal in, results of the frames now complete out (see :class:`FrameStream`)."""
        if self.inference(hop_samples) == "batched":
            return self._batched.stream(hop_samples, batch)
        return per_frame_stream(self.predict, hop_samples, batch)

    def multi_stream(self, hop_samples: int = HOP_SAMPLES, batch: int = DEFAULT_BATCH) -> MultiFileStream:
        """Many files' blocks in, one after another, tagged results out (see :class:`MultiFileStream`). Batched,
        its front end runs on a helper thread while the stream is open: use no other stream of this model then."""
        if self.inference(hop_samples) != "batched":
            return per_frame_multi_stream(self.predict, hop_samples, batch)
        b = self._batched
        group = b.frames_per_run(hop_samples, 1)
        return MultiFileStream(
            lambda: StreamFramer(hop_samples, WINDOW_SAMPLES, group), b.prepare, b.run_cnn, batch, helper=True
        )

    def predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores [F, 521] and embeddings [F, 1024] (float32, owned copies) for frames [F, 15600], one
        ``invoke()`` of the whole model per frame."""
        x = np.asarray(frames)
        if x.ndim != 2 or x.shape[1] != WINDOW_SAMPLES:
            raise ValueError(f"frames must have shape [F, {WINDOW_SAMPLES}], got {list(x.shape)}")
        return self._frame_interpreter().predict(np.ascontiguousarray(x, dtype=np.float32))

    def _frame_interpreter(self) -> _FrameInterpreter:
        if self._frames is None:
            self._frames = _FrameInterpreter(self._prepared, self._num_threads, self._uri)
        return self._frames


# (model SHA-256, num_threads) -> whether the batched subgraphs reproduced per-frame invoke in this process
_verdicts: dict[tuple[str, int], bool] = {}


def inference_path(model_bytes: bytes, hop_samples: int = HOP_SAMPLES) -> str:
    """What :meth:`YamnetModel.inference` gives for this model and hop on this runtime, ``"batched"`` or
    ``"per_frame"``, without keeping a model (the subgraphs are checked once per process)."""
    points = split.find_split(model_bytes)
    if points is None or not batches_well(points, hop_samples):
        return "per_frame"
    key = (_prepared(model_bytes).sha256, 1)
    if key not in _verdicts:
        YamnetModel(model_bytes)  # verifies and records the verdict
    return "batched" if _verdicts[key] else "per_frame"
