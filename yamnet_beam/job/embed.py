"""The embed step: every part's audio decoded, run through YAMNet and committed as frames/ and files/ parts.

:class:`EmbedAudioParts` embeds each part's files and commits the part; a long seekable file is split
into segments embedded in parallel and committed by its own files part once all are done. Every failure
becomes a ``files/`` row with a counter, so no input is ever silently dropped.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import apache_beam as beam
import pyarrow as pa

from yamnet_beam import framing
from yamnet_beam.audio import AudioDecodeError, open_audio, open_audio_files, segment_quantum
from yamnet_beam.job.frames import (
    SEGMENTS_TAG,
    EmbedSettings,
    FileFrames,
    _identity,
    _ModelFn,
    _OutputFn,
    _source_fields,
    _warning,
)
from yamnet_beam.job.inputs import InputFile, has_identity, with_identity
from yamnet_beam.job.parts import Part, Segment, long_file_part_id
from yamnet_beam.model.loader import ModelLoader
from yamnet_beam.model.multifile import MultiFileStream
from yamnet_beam.table import schema
from yamnet_beam.table.parts import PartWriteError, PartWriter
from yamnet_beam.uris import display_path

_LOG = logging.getLogger(__name__)


class _EmbedPartFn(_ModelFn):
    """Embeds every file of a part, streaming frames into the part's Parquet file, then commits the part.

    Yields one files row per input (also written to ``files/``), for counting and summaries. A long,
    seekable file is not embedded here: it is handed on as segments (tagged output ``segments``).
    """

    def process(self, part: Part) -> Iterator[Any]:
        writer = self._writer(part.id)
        rows: list[dict[str, Any]] = []
        segments: list[Segment] = []
        written: dict[int, FileFrames] = {}  # a row's id -> its file's frames, counted once all are written
        items = list(part.files)
        s = self._settings
        # One decode thread opens and decodes the part's files in order, ahead of the model: with many short
        # files the model otherwise waits for every file's first block. One model stream serves the whole
        # part: a file's last frames share a CNN batch with the next file's first ones. Identities a listing
        # did not give (manifest entries) are looked up on another thread, ahead too.
        streams = open_audio_files(
            [item.path for item in items],
            block_seconds=s.block_seconds,
            timeout_s=s.decode_timeout_s,
            max_duration_s=s.max_duration_s,
        )
        with (
            ThreadPoolExecutor(1, thread_name_prefix="yamnet-beam-identity") as pool,
            contextlib.closing(streams),
            self._model_stream() as frames,
        ):
            try:
                known = all(has_identity(item) for item in items)
                for item, opened in zip(items if known else pool.map(with_identity, items), streams, strict=True):
                    result = self.embed_file(item, part.id, writer, opened, frames, rows, written)
                    if isinstance(result, list):
                        segments += result
                    else:
                        rows.append(result)
                try:
                    self._write(writer, frames.drain)
                except PartWriteError:
                    raise
                except Exception as e:  # a model failure: the files whose frames were queued say so
                    _LOG.exception("Unexpected failure on the last frames of part %s", part.id)
                    self._fail_queued(frames, rows, written, _internal_reason(e))
                for row in rows:
                    if id(row) in written:
                        row["frames"] = written[id(row)].rows
                t0 = time.perf_counter()
                if rows:
                    writer.commit(rows)
                self._write_ms.inc(int((time.perf_counter() - t0) * 1000))
            except BaseException:
                writer.abort()
                raise
        for row in rows:
            yield self._count(row)
        for seg in segments:
            yield beam.pvalue.TaggedOutput(SEGMENTS_TAG, seg)

    @staticmethod
    def _fail_queued(
        frames: MultiFileStream, rows: list[dict[str, Any]], written: dict[int, FileFrames], reason: str
    ) -> None:
        """The model failed: every file whose frames were still queued lost them, so its row says internal."""
        dropped = frames.discard()
        for row in rows:
            if written.get(id(row)) in dropped and row["status"] == schema.STATUS_OK:
                row.update(status=schema.STATUS_ERROR, error_kind="internal", error=reason)

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

    def embed_file(
        self,
        item: InputFile,
        part_id: str,
        writer: PartWriter,
        opened: Any,
        frames: MultiFileStream,
        rows: list[dict[str, Any]],
        written: dict[int, FileFrames],
    ) -> dict[str, Any] | list[Segment]:
        """Streams one file through decode, framing and the model into ``writer``; returns its files row
        (or, for a long seekable file, the segments to process instead). ``opened``: its open stream, or what
        opening it raised (from :func:`~yamnet_beam.audio.open_audio_files`). ``frames``: the part's model
        stream, whose queue may still hold this file's last frames on return; the row's ``frames`` count is
        ``written[id(row)].rows`` once the stream is drained.
        ``rows``: the part's rows so far, which a model failure may turn into errors (their frames were queued).
        """
        s = self._settings
        opened_stream = opened
        path = display_path(item.path)
        identity = _identity(item, s.fingerprint, part_id)
        target = FileFrames(path)
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
                self._stream_frames(target, stream, frames, writer, finish=True)
        except PartWriteError:  # the output failed, not this file: the part fails and is retried
            raise
        except AudioDecodeError as e:
            try:  # the audio decoded before the failure (or the limit) is kept, framed as if the file ended there
                if frames.total_samples and not frames.finished:
                    self._write(writer, frames.end)
            except PartWriteError:
                raise
            except Exception as e2:
                _LOG.exception("Could not keep the frames decoded before the failure of %s", path)
                self._fail_queued(frames, rows, written, _internal_reason(e2))
            row = self._error_row(path, identity, info, stream, e.kind, str(e))
        except Exception as e:  # a bug or a model failure must still leave a row, never a lost file
            _LOG.exception("Unexpected failure on %s", path)
            reason = _internal_reason(e)
            self._fail_queued(frames, rows, written, reason)
            row = self._error_row(path, identity, info, stream, "internal", reason)
        else:
            row = schema.file_row(
                path,
                status=schema.STATUS_OK,
                duration_s=stream.duration_s,
                warning=_warning(frames.total_samples, stream.nonfinite_samples, stream.clipped_samples),
                nonfinite_samples=stream.nonfinite_samples,
                **_source_fields(info),
                **identity,
            )
        written[id(row)] = target
        return row

    def _error_row(self, path, identity, info, stream, kind, reason) -> dict[str, Any]:
        return schema.file_row(
            path,
            status=schema.STATUS_ERROR,
            error_kind=kind,
            error=without_path(path, reason),
            duration_s=stream.duration_s if stream is not None else None,
            nonfinite_samples=stream.nonfinite_samples if stream is not None else None,
            **_source_fields(info),
            **identity,
        )


def _internal_reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e} ({traceback.format_exc(limit=2).splitlines()[-1]})"


def without_path(path: str, reason: str) -> str:
    """The reason alone: the decoders name the file first ("PATH: ..."), and its row has a path column."""
    head, sep, rest = reason.partition(": ")
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return rest if sep and name and head.rstrip("/").endswith(name) else reason


class _EmbedSegmentFn(_ModelFn):
    """Embeds one segment of a long file and commits its frames; yields ``(part_id, result)`` for the file's row."""

    def process(self, seg: Segment) -> Iterator[tuple[str, dict[str, Any]]]:
        s = self._settings
        path = display_path(seg.file.path)
        writer = self._writer(seg.frames_name)
        target = FileFrames(path, seg.first_frame, seg.start)
        result: dict[str, Any] = {"index": seg.index, "count": seg.count, "error_kind": None, "error": None}
        stream = None
        try:
            with self._model_stream() as frames:
                try:
                    with open_audio(
                        seg.file.path,
                        block_seconds=s.block_seconds,
                        timeout_s=s.decode_timeout_s,
                        segment=(seg.start, seg.stop),
                    ) as stream:
                        result["info"] = stream.info
                        last = seg.stop is None
                        self._stream_frames(target, stream, frames, writer, last)
                    self._write(writer, frames.drain)
                    if (
                        not last
                        and writer.rows_added != (seg.stop - seg.start - framing.WINDOW_SAMPLES) // s.hop_samples + 1
                    ):
                        raise AudioDecodeError(
                            "corrupt",
                            f"{path}: audio ends at {(seg.start + frames.total_samples) / framing.SAMPLE_RATE:.1f} s, "
                            "before the length its header gives",
                        )
                except PartWriteError:
                    raise
                except AudioDecodeError as e:
                    result["error_kind"], result["error"] = e.kind, without_path(path, str(e))
                    self._write(writer, frames.drain)  # the frames decoded before the failure are kept
                except Exception as e:  # never lose the file: its row will say what happened
                    _LOG.exception("Unexpected failure on %s, segment %d", path, seg.index)
                    result["error_kind"], result["error"] = "internal", f"{type(e).__name__}: {e}"
                    frames.discard()
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
