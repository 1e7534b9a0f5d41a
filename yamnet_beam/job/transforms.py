"""Beam adapters: DoFns and PTransforms that wrap the Beam-free audio, framing, model, schema and parts code.

The DoFns only adapt: they hold picklable configuration, build heavy state in ``setup()`` and turn
every failure into a ``files/`` row with a counter, so no input is ever silently dropped.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from yamnet_beam import framing
from yamnet_beam.audio import AudioDecodeError, AudioInfo, open_audio, segment_quantum
from yamnet_beam.job.inputs import InputFile, with_identity
from yamnet_beam.job.parts import Part, Segment, long_file_part_id
from yamnet_beam.model.batched import DEFAULT_BATCH, FrameResults, FrameStream, open_stream
from yamnet_beam.table import schema
from yamnet_beam.table.parts import PartWriter
from yamnet_beam.uris import display_path

_LOG = logging.getLogger(__name__)
METRICS_NAMESPACE = "yamnet_beam"


class FrameModel(Protocol):
    """What the pipeline needs of a model: ``[F, 15600]`` float32 frames in, scores and embeddings out.

    A model that also has ``stream(hop, batch)`` (:class:`~yamnet_beam.model.YamnetModel`) is run
    through it, batched where its graph allows; see :func:`yamnet_beam.model.open_stream`.
    """

    def predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class ModelLoader:
    """Picklable recipe for the model a DoFn builds in ``setup()`` (the seam tests use to inject a fake).

    The model bytes are cached per process by :func:`yamnet_beam.model.read_model_bytes`, so a worker
    reads the file once however many DoFn instances (threads) it runs; each instance gets its own
    interpreter because interpreters are not thread-safe.
    """

    def __init__(
        self, uri: str, num_threads: int = 1, expected_sha256: str | None = None, inference: str | None = None
    ):
        self.uri = uri
        self.num_threads = num_threads
        self.expected_sha256 = expected_sha256
        self.inference = inference  # "batched" / "per_frame" as the launcher found it; None: whatever works here

    def load(self) -> FrameModel:
        from yamnet_beam.model import ModelError, YamnetModel

        model = YamnetModel.from_uri(self.uri, num_threads=self.num_threads, batched=self.inference != "per_frame")
        # The launcher checked the model and stamped its SHA-256 on every table: a worker that sees
        # other bytes at that URI (replaced mid-run, another node's copy) must not write rows.
        if self.expected_sha256 and model.info.sha256 != self.expected_sha256:
            raise ModelError(
                f"{self.uri} changed since the job started: SHA-256 {model.info.sha256}, expected "
                f"{self.expected_sha256}; give workers the same model file"
            )
        # ... and recorded which inference path runs: a worker whose runtime cannot run it must not either.
        if self.inference == "batched" and not model.has_batched_path:
            raise ModelError(
                f"{self.uri}: the launcher runs it batched, but this worker ({model.info.runtime}) cannot build "
                "batched subgraphs bit-identical to per-frame invoke; give workers the launcher's LiteRT version"
            )
        return model


@dataclass(frozen=True)
class EmbedSettings:
    """Per-file processing parameters (picklable, validated by the pipeline before use)."""

    hop_samples: int = framing.HOP_SAMPLES
    block_seconds: float = 10.0
    frames_per_batch: int = DEFAULT_BATCH  # frames per CNN invoke (batched path), per predict() call otherwise
    row_group_rows: int = 4096
    decode_timeout_s: float | None = None
    max_duration_s: float | None = None
    shard_seconds: float | None = None  # split seekable files longer than 1.5x this into segments
    fingerprint: str = ""
    head_uri: str | None = None  # run --head: a trained head's directory, checked by the launcher
    head_sha256: str | None = None


SEGMENTS_TAG = "segments"


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
            _LOG.warning("%s (%s)", row["error"], row["error_kind"])  # the reason names the file
        self._frames.inc(row["frames"])
        self._audio_ms.inc(int((row["duration_s"] or 0) * 1000))
        self._nonfinite.inc(row["nonfinite_samples"] or 0)
        return row


class _ModelFn(_OutputFn):
    """Shared by the DoFns that run the model: it is built in setup(), one per DoFn instance (thread)."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._model: FrameModel | None = None  # never pickled with the DoFn

    def setup(self):
        super().setup()
        _tune_worker_memory()
        t0 = time.perf_counter()
        self._model = self._model_loader.load()
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

    def _frame_stream(self) -> FrameStream:
        """A fresh stream of the model for one file or segment, ``--frames_per_batch`` frames per CNN invoke."""
        return open_stream(self._model, self._settings.hop_samples, self._settings.frames_per_batch)

    def _stream_frames(
        self,
        path: str,
        stream,
        frames: FrameStream,
        writer: PartWriter,
        first_frame: int,
        start_sample: int,
        finish: bool,
    ) -> None:
        """Runs the stream's blocks through the model into ``writer`` (``finish``: pad and flush the last frames)."""
        blocks = stream.blocks()
        while True:
            t0 = time.perf_counter()
            block = next(blocks, None)
            self._decode_ms.inc(int((time.perf_counter() - t0) * 1000))
            if block is None and not finish:
                return
            self._write_results(
                path,
                frames.finish() if block is None else frames.push(block),
                frames,
                writer,
                first_frame,
                start_sample,
            )
            if block is None:
                return

    def _write_results(
        self,
        path: str,
        results: Iterator[FrameResults],
        frames: FrameStream,
        writer: PartWriter,
        first_frame: int,
        start_sample: int,
    ) -> None:
        """Adds the frames ``results`` yields to ``writer``; the model runs inside ``next()``, timed as inference."""
        while True:
            t0 = time.perf_counter()
            batch = next(results, None)
            self._infer_ms.inc(int((time.perf_counter() - t0) * 1000))
            if batch is None:
                return
            writer.add(self._frames_table(path, batch, first_frame, start_sample + frames.total_samples))

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


def _load_head(settings: EmbedSettings):
    """The head of ``run --head`` (None without one); its bytes must be those the launcher checked."""
    if not settings.head_uri:
        return None
    from yamnet_beam.model.head import load_head

    return load_head(settings.head_uri, expected_sha256=settings.head_sha256)


def _head_columns(head, embeddings: np.ndarray) -> tuple[np.ndarray, Sequence[str], Sequence[float]] | None:
    """What :func:`schema.frames_table` needs for the head's columns, from this batch's embeddings."""
    return None if head is None else (head.scores(embeddings), head.classes, head.thresholds)


class _EmbedPartFn(_ModelFn):
    """Embeds every file of a part, streaming frames into the part's Parquet file, then commits the part.

    Yields one files row per input (also written to ``files/``), for counting and summaries. A long,
    seekable file is not embedded here: it is handed on as segments (tagged output ``segments``).
    """

    def process(self, part: Part) -> Iterator[Any]:
        writer = self._writer(part.id)
        rows, segments = [], []
        items = list(part.files)
        # The next file is opened (and its first blocks decoded) while this one runs through the
        # model: with many short files the model otherwise waits for every file's first block.
        with ThreadPoolExecutor(1, thread_name_prefix="yamnet-beam-open") as pool:
            pending = pool.submit(self._open, items[0]) if items else None
            try:
                for i, item in enumerate(items):
                    opened = pending
                    pending = pool.submit(self._open, items[i + 1]) if i + 1 < len(items) else None
                    result = self.embed_file(item, part.id, writer, opened.result())
                    if isinstance(result, list):
                        segments += result
                    else:
                        rows.append(result)
                t0 = time.perf_counter()
                if rows:
                    writer.commit(rows)
                self._write_ms.inc(int((time.perf_counter() - t0) * 1000))
            except BaseException:
                writer.abort()
                raise
            finally:
                if pending is not None:  # a failed part: do not leave the prefetched file open
                    stream = pending.result()[1]
                    if not isinstance(stream, BaseException):
                        stream.close()
        for row in rows:
            yield self._count(row)
        for seg in segments:
            yield beam.pvalue.TaggedOutput(SEGMENTS_TAG, seg)

    def _plan_segments(self, item: InputFile, info) -> list[Segment] | None:
        s = self._settings
        if not (s.shard_seconds and s.max_duration_s is None and info.seekable and info.frames):
            return None
        n_estimate = info.frames * framing.SAMPLE_RATE // info.sample_rate
        if n_estimate <= 1.5 * s.shard_seconds * framing.SAMPLE_RATE:
            return None
        bounds = framing.segment_bounds(
            n_estimate, int(s.shard_seconds * framing.SAMPLE_RATE), s.hop_samples, segment_quantum(info.sample_rate)
        )
        if len(bounds) < 2:  # segments start on a grid coarser than the file: one "segment" is the whole file
            return None
        pid = long_file_part_id(item, s.fingerprint)
        return [Segment(item, pid, i, len(bounds), start, stop, first) for i, (start, stop, first) in enumerate(bounds)]

    def _open(self, item: InputFile) -> tuple[InputFile, Any]:
        """``item`` with its identity, and its open stream or the exception opening raised."""
        s = self._settings
        item = with_identity(item)
        try:
            return item, open_audio(
                item.path,
                block_seconds=s.block_seconds,
                timeout_s=s.decode_timeout_s,
                max_duration_s=s.max_duration_s,
            )
        except Exception as e:  # reported by embed_file, in the file's row
            return item, e

    def embed_file(
        self, item: InputFile, part_id: str, writer: PartWriter, opened: tuple[InputFile, Any] | None = None
    ) -> dict[str, Any] | list[Segment]:
        """Streams one file through decode, framing and the model into ``writer``; returns its files row
        (or, for a long seekable file, the segments to process instead). ``opened``: what
        :meth:`_open` returned for it, when it was opened ahead."""
        s = self._settings
        item, opened_stream = opened if opened is not None else self._open(item)
        path = display_path(item.path)
        identity = _identity(item, s.fingerprint, part_id)
        framer = self._frame_stream()
        before = writer.rows_added
        info = None
        stream = None
        try:
            if isinstance(opened_stream, BaseException):
                raise opened_stream
            with opened_stream as stream:
                info = stream.info
                segments = self._plan_segments(item, info)
                if segments:
                    self._segment_count.inc(len(segments))
                    return segments
                self._stream_frames(path, stream, framer, writer, 0, 0, finish=True)
        except AudioDecodeError as e:
            try:  # the audio decoded before the failure (or the limit) is kept, framed as if the file ended there
                if framer.total_samples and not framer.finished:
                    self._write_results(path, framer.finish(), framer, writer, 0, 0)
            except Exception:
                _LOG.exception("Could not keep the frames decoded before the failure of %s", path)
            return self._error_row(path, identity, info, stream, writer.rows_added - before, e.kind, str(e))
        except Exception as e:  # a bug or a model failure must still leave a row, never a lost file
            _LOG.exception("Unexpected failure on %s", path)
            reason = f"{type(e).__name__}: {e} ({traceback.format_exc(limit=2).splitlines()[-1]})"
            return self._error_row(path, identity, info, stream, writer.rows_added - before, "internal", reason)
        return schema.file_row(
            path,
            status=schema.STATUS_OK,
            frames=writer.rows_added - before,
            duration_s=stream.duration_s,
            warning=_warning(framer.total_samples, stream.nonfinite_samples, stream.clipped_samples),
            nonfinite_samples=stream.nonfinite_samples,
            **_source_fields(info),
            **identity,
        )

    def _error_row(self, path, identity, info, stream, emitted, kind, reason) -> dict[str, Any]:
        return schema.file_row(
            path,
            status=schema.STATUS_ERROR,
            error_kind=kind,
            error=reason,
            frames=emitted,
            duration_s=stream.duration_s if stream is not None else None,
            nonfinite_samples=stream.nonfinite_samples if stream is not None else None,
            **_source_fields(info),
            **identity,
        )


class _EmbedSegmentFn(_ModelFn):
    """Embeds one segment of a long file and commits its frames; yields ``(part_id, result)`` for the file's row."""

    def process(self, seg: Segment) -> Iterator[tuple[str, dict[str, Any]]]:
        s = self._settings
        path = display_path(seg.file.path)
        writer = self._writer(seg.frames_name)
        framer = self._frame_stream()
        result: dict[str, Any] = {"index": seg.index, "count": seg.count, "error_kind": None, "error": None}
        stream = None
        try:
            try:
                with open_audio(
                    seg.file.path,
                    block_seconds=s.block_seconds,
                    timeout_s=s.decode_timeout_s,
                    segment=(seg.start, seg.stop),
                ) as stream:
                    result["info"] = stream.info
                    last = seg.stop is None
                    self._stream_frames(path, stream, framer, writer, seg.first_frame, seg.start, last)
                if (
                    not last
                    and writer.rows_added != (seg.stop - seg.start - framing.WINDOW_SAMPLES) // s.hop_samples + 1
                ):
                    raise AudioDecodeError(
                        "corrupt",
                        f"{path}: audio ends at {(seg.start + framer.total_samples) / framing.SAMPLE_RATE:.1f} s, "
                        "before the length its header gives",
                    )
            except AudioDecodeError as e:
                result["error_kind"], result["error"] = e.kind, str(e)
            except Exception as e:  # never lose the file: its row will say what happened
                _LOG.exception("Unexpected failure on %s, segment %d", path, seg.index)
                result["error_kind"], result["error"] = "internal", f"{type(e).__name__}: {e}"
            t0 = time.perf_counter()
            writer.commit_frames()
            self._write_ms.inc(int((time.perf_counter() - t0) * 1000))
        except BaseException:
            writer.abort()
            raise
        result["frames"] = writer.rows_added
        if stream is not None:
            source = stream.source_samples  # the last segment counts to the end of the file
            if seg.stop is not None:
                # segments overlap by window - hop; each owns the audio up to the next one's start
                own = seg.stop - (framing.WINDOW_SAMPLES - s.hop_samples) - seg.start
                source = min(source, own * stream.info.sample_rate // framing.SAMPLE_RATE)
            result.update(source_samples=source, nonfinite=stream.nonfinite_samples, clipped=stream.clipped_samples)
        yield seg.part_id, {"segment": seg, **result}


class _CommitSegmentedFileFn(_OutputFn):
    """Once every segment of a long file is done, writes its one files row: the file's commit marker."""

    def process(self, element: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
        part_id, results = element
        results = sorted(results, key=lambda r: r["index"])
        seg = results[0]["segment"]
        if [r["index"] for r in results] != list(range(seg.count)):  # a runner bug, not a file problem
            raise RuntimeError(f"segments of {seg.file.path} incomplete: {[r['index'] for r in results]}")
        info = next((r["info"] for r in results if r.get("info")), None)
        failed = next((r for r in results if r["error_kind"]), None)
        source = sum(r.get("source_samples", 0) for r in results)
        nonfinite = sum(r.get("nonfinite", 0) for r in results)
        row = schema.file_row(
            display_path(seg.file.path),
            status=schema.STATUS_ERROR if failed else schema.STATUS_OK,
            error_kind=failed["error_kind"] if failed else None,
            error=failed["error"] if failed else None,
            frames=sum(r["frames"] for r in results),
            duration_s=source / info.sample_rate if info else None,
            warning=_warning(None, nonfinite, sum(r.get("clipped", 0) for r in results)),
            nonfinite_samples=nonfinite,
            **_source_fields(info),
            **_identity(seg.file, self._settings.fingerprint, part_id),
        )
        self._writer(part_id).commit([row])
        yield self._count(row)


class EmbedAudioParts(beam.PTransform):
    """``Part`` elements -> files rows; each part's frames and files are committed to ``output`` as it ends.

    Every input yields exactly one files row; frames of a file that fails part-way (truncated, too
    long, timed out) are kept and counted in its row, so the audio before the failure is not lost.
    Long seekable files are split into segments (``shard_seconds``) that are spread over workers like
    parts, so one recording cannot pin a worker for hours; their frames equal a whole-file pass.
    """

    def __init__(
        self,
        model_loader: ModelLoader,
        label_names: Sequence[str],
        frames_schema: pa.Schema,
        files_schema: pa.Schema,
        output: str,
        settings: EmbedSettings,
    ):
        super().__init__()
        args = (model_loader, label_names, frames_schema, files_schema, output, settings)
        self._part_fn = _EmbedPartFn(*args)
        self._segment_fn = _EmbedSegmentFn(*args)
        self._commit_fn = _CommitSegmentedFileFn(*args)

    def expand(self, parts):
        results = (
            parts
            | "SpreadParts" >> beam.Reshuffle()
            | "EmbedAndCommit" >> beam.ParDo(self._part_fn).with_outputs(SEGMENTS_TAG, main="files")
        )
        long_files = (
            results[SEGMENTS_TAG]
            | "SpreadSegments" >> beam.Reshuffle()
            | "EmbedSegments" >> beam.ParDo(self._segment_fn)
            | "GroupSegments" >> beam.GroupByKey()
            | "CommitLongFiles" >> beam.ParDo(self._commit_fn)
        )
        return (results.files, long_files) | "AllFiles" >> beam.Flatten()
