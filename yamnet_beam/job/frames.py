"""A file's audio through the model into a part: the settings, and the DoFn bases of the embed step.

:class:`_OutputFn` writes parts (a :class:`~yamnet_beam.table.parts.PartWriter`) and counts rows;
:class:`_ModelFn` builds the model in ``setup()`` (with a :class:`~yamnet_beam.model.loader.ModelLoader`,
the seam tests use to inject a fake), streams decoded blocks through it and turns its results into
frames rows. The DoFns only adapt: picklable configuration in, heavy state built in ``setup()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from yamnet_beam import framing
from yamnet_beam.audio import AudioInfo
from yamnet_beam.job.inputs import InputFile
from yamnet_beam.job.options import BLOCK_SECONDS
from yamnet_beam.model.batched import DEFAULT_BATCH, FrameResults
from yamnet_beam.model.loader import FrameModel, ModelLoader
from yamnet_beam.model.multifile import MultiFileStream, open_multi_stream
from yamnet_beam.table import schema
from yamnet_beam.table.parts import ROW_GROUP_ROWS, PartWriter
from yamnet_beam.versions import check_worker

_LOG = logging.getLogger(__name__)
METRICS_NAMESPACE = "yamnet_beam"


@dataclass(frozen=True)
class EmbedSettings:
    """Per-file processing parameters (picklable, validated by the pipeline before use)."""

    hop_samples: int = framing.HOP_SAMPLES
    block_seconds: float = BLOCK_SECONDS
    frames_per_batch: int = DEFAULT_BATCH  # frames per CNN invoke (batched path), per predict() call otherwise
    row_group_rows: int = ROW_GROUP_ROWS
    decode_timeout_s: float | None = None
    max_duration_s: float | None = None
    shard_seconds: float | None = None  # split seekable files longer than 1.5x this into segments
    fingerprint: str = ""
    head_uri: str | None = None  # run --head: a trained head's directory, checked by the launcher
    head_sha256: str | None = None
    # The launcher's (distribution, version) pairs of versions.PINNED: a worker on others fails its first bundle.
    versions: tuple[tuple[str, str], ...] = ()


SEGMENTS_TAG = "segments"


@dataclass(eq=False)
class FileFrames:
    """Where one file's (or segment's) results go, and how many rows it has had: a stream's key for the file."""

    path: str
    first_frame: int = 0  # a segment's first frame number
    start_sample: int = 0  # a segment's first 16 kHz sample
    rows: int = 0


def _warning(n_samples: int | None, nonfinite: int, clipped: int = 0) -> str | None:
    notes = []
    if n_samples is not None and n_samples < framing.WINDOW_SAMPLES:
        notes.append(
            f"shorter than one window ({n_samples / framing.SAMPLE_RATE:.3f} s < 0.975 s): one zero-padded frame"
        )
    if nonfinite:
        notes.append(f"{nonfinite} NaN/Inf sample values replaced by 0")
    if clipped:
        notes.append(f"{clipped} absurdly large sample values (beyond +-2**20) clipped")
    return "; ".join(notes) or None


def _identity(item: InputFile, fingerprint: str, part_id: str) -> dict[str, Any]:
    return dict(size_bytes=item.size_bytes, mtime=item.mtime, etag=item.etag, fingerprint=fingerprint, part=part_id)


def _source_fields(info: AudioInfo | None) -> dict[str, Any]:
    """The files row's description of the source (all None when it never opened)."""
    fields = ("sample_rate", "channels", "format", "decoder")
    return {f: getattr(info, f) if info is not None else None for f in fields}


@functools.cache
def _tune_worker_memory() -> None:
    """Keeps a worker's peak memory near its working set (once per process).

    Measured on the benchmark's corpus: Arrow's default allocator and glibc's per-thread malloc
    arenas (one per decode thread) retained 150 MB more than the worker ever used at once
    (533 MB vs 365 MB per worker). The system pool for Arrow and at most two malloc arenas remove
    that; neither changes a result.
    """
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX = -8 (glibc only; elsewhere this is a no-op)
    except (OSError, AttributeError):
        pass


class _OutputFn(beam.DoFn):
    """Shared by the DoFns that write parts: picklable config in, counters built in setup()."""

    def __init__(
        self,
        model_loader: ModelLoader,
        label_names: Sequence[str],
        frames_schema: pa.Schema,
        files_schema: pa.Schema,
        output: str,
        settings: EmbedSettings,
    ):
        self._model_loader = model_loader
        self._label_names = tuple(label_names)
        self._frames_schema = frames_schema
        self._files_schema = files_schema
        self._output = output
        self._settings = settings

    def setup(self):
        check_worker(dict(self._settings.versions))
        self._files_ok = Metrics.counter(METRICS_NAMESPACE, "files_ok")
        self._files_error = Metrics.counter(METRICS_NAMESPACE, "files_error")
        self._frames = Metrics.counter(METRICS_NAMESPACE, "frames")
        self._audio_ms = Metrics.counter(METRICS_NAMESPACE, "audio_ms")
        self._nonfinite = Metrics.counter(METRICS_NAMESPACE, "nonfinite_samples")

    def _writer(self, part_id: str) -> PartWriter:
        return PartWriter(self._output, part_id, self._frames_schema, self._files_schema, self._settings.row_group_rows)

    def _count(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["status"] == schema.STATUS_OK:
            self._files_ok.inc()
        else:
            Metrics.counter(METRICS_NAMESPACE, f"files_error_{row['error_kind']}").inc()
            self._files_error.inc()
            _LOG.warning("%s: %s (%s)", row["path"], row["error"], row["error_kind"])
        self._frames.inc(row["frames"])
        self._audio_ms.inc(int((row["duration_s"] or 0) * 1000))
        self._nonfinite.inc(row["nonfinite_samples"] or 0)
        return row


class _ModelFn(_OutputFn):
    """Shared by the DoFns that run the model: it is built in setup(), one per DoFn instance (thread)."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._model: FrameModel | None = None  # never pickled with the DoFn
        self._stream: MultiFileStream | None = None

    def setup(self):
        super().setup()
        _tune_worker_memory()
        t0 = time.perf_counter()
        self._model = self._model_loader.load()
        self._stream = None  # built at first use, for this model
        self._head = _load_head(self._settings)
        self._labels = np.asarray(self._label_names, dtype=object)
        self._plain_schema = self._frames_schema.remove_metadata()
        self._load_ms = int((time.perf_counter() - t0) * 1000)
        self._load_reported = False
        self._decode_ms = Metrics.counter(METRICS_NAMESPACE, "decode_ms")
        self._infer_ms = Metrics.counter(METRICS_NAMESPACE, "infer_ms")
        self._build_ms = Metrics.counter(METRICS_NAMESPACE, "arrow_ms")
        self._write_ms = Metrics.counter(METRICS_NAMESPACE, "write_ms")
        self._segment_count = Metrics.counter(METRICS_NAMESPACE, "segments")

    def start_bundle(self):
        # Metrics updated in setup() belong to no step and are dropped: report the load here, once.
        if not self._load_reported:
            self._load_reported = True
            Metrics.distribution(METRICS_NAMESPACE, "model_load_ms").update(self._load_ms)
            info = getattr(self._model, "info", None)
            if info is not None:
                Metrics.distribution(METRICS_NAMESPACE, "model_bytes").update(info.size_bytes)

    def _model_stream(self) -> contextlib.AbstractContextManager[MultiFileStream]:
        """The model's queue for a part's (or a segment's) files, ``--frames_per_batch`` frames per CNN invoke.

        One per DoFn instance, kept between parts (its helper thread, and its choice of where the front end
        runs, carry over; :meth:`teardown` stops it); leaving the ``with`` block drops whatever a failure left
        queued, so every part starts empty."""
        if self._stream is None:
            self._stream = open_multi_stream(self._model, self._settings.hop_samples, self._settings.frames_per_batch)
        return _emptied(self._stream)

    def teardown(self):
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _stream_frames(self, target: FileFrames, stream, frames: MultiFileStream, writer: PartWriter, finish: bool):
        """Runs the stream's blocks through the model; results go to ``writer`` as they come, of this file or
        earlier ones (``finish``: this file ends here, its last frame padded; else a segment's end).

        Looks one block ahead, so the last block is pushed together with the end: a file of one block (a
        short clip) is then one span through the model. The decoder runs ahead anyway, so this waits for nothing.
        """
        frames.begin(target)
        blocks = stream.blocks()
        block = self._next_block(blocks, frames)
        while True:
            if block is None:  # no audio at all (an empty segment); a file's stream raises no_audio instead
                if finish:
                    self._write(writer, frames.end)
                return
            try:
                following = self._next_block(blocks, frames)
            except Exception:  # keep the audio decoded before the failure: frame it as the handler expects
                self._write(writer, frames.push, block)
                self._write(writer, frames.cut)
                raise
            self._write(writer, frames.push, block, following is None and finish)
            if following is None:
                if not finish:  # a segment's end: its complete frames, unpadded
                    self._write(writer, frames.cut)
                return
            block = following

    def _next_block(self, blocks: Iterator[np.ndarray], frames: MultiFileStream) -> np.ndarray | None:
        t0 = time.perf_counter()
        try:
            return next(blocks, None)
        finally:
            waited = time.perf_counter() - t0
            frames.waited(waited)
            self._decode_ms.inc(int(waited * 1000))

    def _write(self, writer: PartWriter, step: Callable[..., list[FrameResults]], *args: Any) -> None:
        """Adds the results of a stream's ``step(*args)`` (the model runs in it: timed as inference) to
        ``writer``, each to the rows of the file its key names."""
        t0 = time.perf_counter()
        results = step(*args)
        self._infer_ms.inc(int((time.perf_counter() - t0) * 1000))
        for batch in results:
            target: FileFrames = batch.key
            writer.add(
                self._frames_table(target.path, batch, target.first_frame, target.start_sample + batch.total_samples)
            )
            target.rows += len(batch)

    def _frames_table(self, path: str, batch: FrameResults, first_frame: int, total_samples: int) -> pa.Table:
        """A batch of model results as frames rows; ``first_frame`` offsets a segment's numbering."""
        hop = self._settings.hop_samples
        index = first_frame + batch.first_frame
        t0 = time.perf_counter()
        start_s, end_s = framing.frame_times(index, len(batch), hop)
        valid = framing.valid_samples(index, len(batch), total_samples, hop)
        table = schema.frames_table(
            self._plain_schema,
            path,
            index,
            start_s,
            end_s,
            valid,
            batch.scores,
            batch.embeddings,
            self._labels,
            _head_columns(self._head, batch.embeddings),
        )
        self._build_ms.inc(int((time.perf_counter() - t0) * 1000))
        return table


@contextlib.contextmanager
def _emptied(stream: MultiFileStream) -> Iterator[MultiFileStream]:
    try:
        yield stream
    finally:
        stream.discard()


def _load_head(settings: EmbedSettings):
    """The head of ``run --head`` (None without one); its bytes must be those the launcher checked."""
    if not settings.head_uri:
        return None
    from yamnet_beam.model.head import load_head

    return load_head(settings.head_uri, expected_sha256=settings.head_sha256)


def _head_columns(head, embeddings: np.ndarray) -> tuple[np.ndarray, Sequence[str], Sequence[float]] | None:
    """What :func:`schema.frames_table` needs for the head's columns, from this batch's embeddings."""
    return None if head is None else (head.scores(embeddings), head.classes, head.thresholds)
