"""Batched YAMNet: the front end once per STFT row, the CNN over B patches per invoke, bit for bit.

A span of consecutive frames (:class:`~yamnet_beam.framing.FrameSpan`) is cut into its STFT rows
(a strided view; rows shared by overlapping frames are taken once), the front-end subgraph turns
them into log-mel rows in one invoke, patches of 96 rows are gathered from those, and the CNN
subgraph runs ``batch`` patches per invoke. XNNPACK quantizes the hybrid layers' activations per
row (per sample), so this equals per-frame ``invoke()`` of the whole model bit for bit; a
:class:`BatchedYamnet` is only used after checking that (:meth:`BatchedYamnet.create`, once per
process and model in :class:`~yamnet_beam.model.YamnetModel`).

The last CNN batch of a span is run at its own size, not padded: resizing an XNNPACK interpreter's
input is a cheap reshape, measured faster than running padding rows (benchmarks/pipeline_bench.py).

:class:`FrameStream` is the one streaming interface for both paths: blocks in, scores and
embeddings of the frames now complete out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from yamnet_beam.framing import HOP_SAMPLES, WINDOW_SAMPLES, FrameSpan, StreamFramer
from yamnet_beam.model.graph import EMBEDDING_DIM, NUM_CLASSES, ModelError
from yamnet_beam.model.litert import make_interpreter
from yamnet_beam.model.split import SplitPoints, build_models, find_split

_LOG = logging.getLogger(__name__)

# CNN patches per invoke. Measured (benchmarks/pipeline_bench.py, AVX-512): B = 4 as fast as 16 or faster
# (the CNN alone 0.52 vs 0.54 ms/frame, B = 1 0.56, B = 64 0.60: its activations leave cache; the whole
# batched model 1.13x vs 1.10x per-frame invoke), and B = 4 holds 8 MB less activation memory than 16.
DEFAULT_BATCH = 4
DEFAULT_MAX_ROWS = 2048  # front-end rows per invoke: larger blocks fall out of cache (measured slower at 4096)
# The split pays only through STFT rows computed once for several frames. With none shared (a hop that is
# not a multiple of the 160-sample row hop, or >= 96 rows), the stacked front end plus batched CNN measured
# 0.92-0.97x per-frame invoke (CPU time, AVX-512, 4 runs) and 1.00x (AVX2): below this share, per-frame runs.
MIN_SHARED_ROWS = 0.25

Pair = tuple[np.ndarray, np.ndarray]  # scores [F, 521], embeddings [F, 1024]
Predict = Callable[[np.ndarray], Pair]


@dataclass
class FrameResults:
    """Results for consecutive frames: row k is frame ``first_frame + k``."""

    first_frame: int
    scores: np.ndarray  # float32 [count, 521]
    embeddings: np.ndarray  # float32 [count, 1024]
    key: Any = None  # the file's key (a MultiFileStream's results; None from a FrameStream)
    total_samples: int = 0  # the file's samples pushed when these frames were cut (MultiFileStream)

    def __len__(self) -> int:
        return len(self.scores)


class FrameStream:
    """Blocks of a 16 kHz signal in, :class:`FrameResults` out; memory holds one window plus one block.

    Equal to ``predict(frame_signal(x, hop))`` on the concatenated signal ``x``, whichever way
    ``infer`` computes a span (batched subgraphs, or per-frame invoke).
    """

    def __init__(self, framer: StreamFramer, infer: Callable[[FrameSpan], Pair]) -> None:
        self._framer, self._infer = framer, infer

    @property
    def total_samples(self) -> int:
        return self._framer.total_samples

    @property
    def finished(self) -> bool:
        return self._framer.finished

    def push(self, block: np.ndarray, final: bool = False, whole: bool = False) -> Iterator[FrameResults]:
        """Adds samples; yields the frames now complete (``final``: the last block, so all of them; ``whole``:
        only whole CNN batches, holding the rest back for the next block, :meth:`flush` or :meth:`finish`)."""
        for span in self._framer.push_spans(block, final, whole):
            yield FrameResults(span.first_frame, *self._infer(span))

    def flush(self) -> Iterator[FrameResults]:
        """Yields the complete frames a push held back to keep CNN batches whole, without finishing."""
        for span in self._framer.flush_spans():
            yield FrameResults(span.first_frame, *self._infer(span))

    def finish(self) -> Iterator[FrameResults]:
        """Yields the remaining frames, the last zero-padded (one frame even for empty input)."""
        for span in self._framer.finish_spans():
            yield FrameResults(span.first_frame, *self._infer(span))


def per_frame_stream(predict: Predict, hop_samples: int = HOP_SAMPLES, batch: int = DEFAULT_BATCH) -> FrameStream:
    """A stream over any ``predict(frames)`` (one invoke per frame, or a test's fake), ``batch`` frames a call."""
    return FrameStream(StreamFramer(hop_samples, WINDOW_SAMPLES, batch), lambda span: predict(span.frames()))


def open_stream(model: Any, hop_samples: int = HOP_SAMPLES, batch: int = DEFAULT_BATCH) -> FrameStream:
    """``model.stream(hop, batch)`` if the model has one (:class:`~yamnet_beam.model.YamnetModel`), else a
    per-frame stream over its ``predict`` (a model with only ``predict``, like the tests' fakes)."""
    stream = getattr(model, "stream", None)
    return stream(hop_samples, batch) if stream is not None else per_frame_stream(model.predict, hop_samples, batch)


class SubgraphRunner:
    """One interpreter over a cut subgraph; its single input is resized to whatever arrives (cheap in XNNPACK)."""

    def __init__(self, content: bytes, num_threads: int, what: str) -> None:
        self._interp = make_interpreter(content, num_threads, what)
        self._input = int(self._interp.get_input_details()[0]["index"])
        self._outputs = [int(d["index"]) for d in self._interp.get_output_details()]  # subgraph output order
        self._shape: tuple[int, ...] | None = None

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if x.shape != self._shape:
            self._interp.resize_tensor_input(self._input, list(x.shape))
            self._interp.allocate_tensors()
            self._shape = x.shape
        self._interp.set_tensor(self._input, x)
        self._interp.invoke()
        return [self._interp.get_tensor(i) for i in self._outputs]


@lru_cache(maxsize=64)
def new_rows_per_frame(points: SplitPoints, hop_samples: int) -> float:
    """STFT rows each frame adds at this hop over a long run: 48 at 0.48 s, 96 when frames share none."""
    n = 64
    starts = (np.arange(n, dtype=np.int64) * hop_samples)[:, None] + np.arange(points.rows_per_frame) * points.row_hop
    return (len(np.unique(starts)) - points.rows_per_frame) / (n - 1)


def batches_well(points: SplitPoints, hop_samples: int) -> bool:
    """True if frames at this hop share at least :data:`MIN_SHARED_ROWS` of their rows (where the split pays)."""
    return new_rows_per_frame(points, hop_samples) <= (1 - MIN_SHARED_ROWS) * points.rows_per_frame


@lru_cache(maxsize=256)
def _row_plan(rows_per_frame: int, row_hop: int, count: int, hop_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """For ``count`` frames from sample 0: the distinct STFT row starts, and each frame's rows as indices into them.

    The same for every run of ``count`` frames (shifted by its first sample), so computed once per size:
    the sort behind it cost ~0.1 ms a span, a tenth of a short clip's non-model time.
    """
    starts = (np.arange(count, dtype=np.int64) * hop_samples)[:, None] + np.arange(rows_per_frame) * row_hop
    unique, where = np.unique(starts, return_inverse=True)  # rows shared by overlapping frames: once
    where = where.reshape(starts.shape)
    unique.flags.writeable = where.flags.writeable = False  # shared by every later call
    return unique, where


_PROBE_BATCH = 4


def probe_signal() -> np.ndarray:
    """Audio on which the batched path must equal per-frame invoke: 5 frames at the default hop, rising
    noise with a silent stretch, the last frame zero-padded (:meth:`BatchedYamnet.verify` runs 4 + 1)."""
    rng = np.random.default_rng(12345)
    n = _PROBE_BATCH * HOP_SAMPLES + WINDOW_SAMPLES - 1234
    x = (rng.standard_normal(n) * np.linspace(0.0, 0.5, n)).astype(np.float32)
    x[HOP_SAMPLES : HOP_SAMPLES + 2000] = 0.0
    return x


def _check(hop_samples: int, batch: int) -> None:
    if not 0 < hop_samples <= WINDOW_SAMPLES:
        raise ValueError(f"hop_samples must be in (0, {WINDOW_SAMPLES}], got {hop_samples}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")


class BatchedYamnet:
    """YAMNet as two subgraphs: shared STFT rows through the front end, patches through the CNN in batches.

    Not thread-safe: one per thread. Any hop works: rows are computed once where frames' rows
    coincide (a hop that is a multiple of the 160-sample row hop, or of 160/k for every k-th frame);
    otherwise each frame's own 96 rows are stacked into the front end's input, which is still one
    invoke for many frames and still bit-identical, but computes every row once per frame (no faster
    than per-frame invoke: :class:`~yamnet_beam.model.YamnetModel` then invokes per frame, see
    :func:`batches_well`).
    """

    def __init__(self, model_bytes: bytes, num_threads: int = 1, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        points = find_split(model_bytes)
        if points is None:
            raise ModelError("this model's graph has no known front-end/CNN split; use YamnetModel (per frame)")
        if max_rows < points.rows_per_frame:
            raise ValueError(f"max_rows must be >= {points.rows_per_frame}, got {max_rows}")
        self.points, self.max_rows = points, max_rows
        frontend, cnn = build_models(bytes(model_bytes), points)
        self._frontend = SubgraphRunner(frontend, num_threads, "the YAMNet front-end subgraph")
        self._cnn = SubgraphRunner(cnn, num_threads, "the YAMNet CNN subgraph")

    @classmethod
    def create(cls, model_bytes: bytes, expected: Pair, num_threads: int = 1) -> BatchedYamnet | None:
        """A verified instance, or None (logged) if the model cannot be split or batching changes any bit.

        ``expected``: per-frame ``invoke()`` of the whole model on ``frame_signal(probe_signal())``,
        computed by the caller beforehand (so that its interpreter can be freed before these are built).
        """
        if find_split(model_bytes) is None:
            _LOG.info("model graph not recognised for batched inference; keeping per-frame invoke")
            return None
        batched = cls(model_bytes, num_threads)
        if not batched.verify(expected):
            _LOG.warning("batched YAMNet differs from per-frame invoke on this runtime; keeping per-frame invoke")
            return None
        return batched

    def verify(self, expected: Pair) -> bool:
        """Bit-compares with per-frame results on :func:`probe_signal`: a CNN batch of 4, then a batch of 1."""
        stream = self.stream(HOP_SAMPLES, _PROBE_BATCH)
        results = [*stream.push(probe_signal()), *stream.finish()]  # a span of 4 frames, then the padded last one
        got = (np.concatenate([r.scores for r in results]), np.concatenate([r.embeddings for r in results]))
        return all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))

    def frames_per_run(self, hop_samples: int, batch: int) -> int:
        """Frames whose rows go through the front end in one invoke (<= max_rows rows), whole CNN batches."""
        _check(hop_samples, batch)
        r = self.points.rows_per_frame
        frames = int((self.max_rows - r) // max(1.0, new_rows_per_frame(self.points, hop_samples))) + 1
        return max(batch, frames // batch * batch)

    def embed_span(
        self, span: np.ndarray, count: int, hop_samples: int = HOP_SAMPLES, batch: int = DEFAULT_BATCH
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and embeddings of frames ``span[k*hop : k*hop + 15600]``, k < ``count``."""
        group = self.frames_per_run(hop_samples, batch)
        span = np.asarray(span, dtype=np.float32).reshape(-1)
        need = (count - 1) * hop_samples + WINDOW_SAMPLES
        if count < 0 or (count and len(span) < need):
            raise ValueError(f"{count} frames at hop {hop_samples} need {need} samples, the span has {len(span)}")
        scores = np.empty((count, NUM_CLASSES), np.float32)
        embeddings = np.empty((count, EMBEDDING_DIM), np.float32)
        rows_view = np.lib.stride_tricks.sliding_window_view(span[:need], self.points.row_len)
        for g0 in range(0, count, group):
            g1 = min(count, g0 + group)
            patches = self._patches(rows_view, g0, g1, hop_samples)
            for b0 in range(g0, g1, batch):
                b1 = min(g1, b0 + batch)
                scores[b0:b1], embeddings[b0:b1] = self.run_cnn(patches[b0 - g0 : b1 - g0])
        return scores, embeddings

    def _patches(self, rows_view: np.ndarray, g0: int, g1: int, hop_samples: int) -> np.ndarray:
        """Patches [g1 - g0, R, M, 1] of frames g0..g1 of a span's STFT rows view: one front-end invoke."""
        p = self.points
        unique, where = _row_plan(p.rows_per_frame, p.row_hop, g1 - g0, hop_samples)
        logmel = self._frontend(np.ascontiguousarray(rows_view[unique + g0 * hop_samples]))[0]
        return logmel[where][..., None]

    def prepare(self, span: FrameSpan) -> np.ndarray:
        """The first stage: a span's patches [count, R, M, 1], one front-end invoke per :meth:`frames_per_run`."""
        group = self.frames_per_run(span.hop, 1)
        rows_view = np.lib.stride_tricks.sliding_window_view(span.samples, self.points.row_len)
        parts = [
            self._patches(rows_view, g0, min(span.count, g0 + group), span.hop) for g0 in range(0, span.count, group)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def run_cnn(self, patches: np.ndarray) -> Pair:
        """The second stage: scores [b, 521] and embeddings [b, 1024] of ``b`` patches in one CNN invoke."""
        s, e = self._cnn(patches)
        return s.reshape(len(patches), -1), e.reshape(len(patches), -1)

    def stream(self, hop_samples: int = HOP_SAMPLES, batch: int = DEFAULT_BATCH) -> FrameStream:
        """A :class:`FrameStream` whose spans each take one front-end invoke."""
        framer = StreamFramer(hop_samples, WINDOW_SAMPLES, self.frames_per_run(hop_samples, batch), batch)
        return FrameStream(framer, lambda span: self.embed_span(span.samples, span.count, hop_samples, batch))
