"""Beam adapters: DoFns and PTransforms that wrap the Beam-free audio, framing, model and schema code.

The DoFns only adapt: they hold picklable configuration, build heavy state in ``setup()`` and turn
every failure into a ``files/`` row with a counter, so no input is ever silently dropped.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import apache_beam as beam
import fsspec
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from yamnet_beam import framing, schema
from yamnet_beam.audio import AudioDecodeError, open_audio
from yamnet_beam.inputs import InputFile

_LOG = logging.getLogger(__name__)
METRICS_NAMESPACE = "yamnet_beam"
FILES_TAG = "files"


class FrameModel(Protocol):
    """What the pipeline needs of a model: ``[F, 15600]`` float32 frames in, scores and embeddings out."""

    def predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class ModelLoader:
    """Picklable recipe for the model a DoFn builds in ``setup()`` (the seam tests use to inject a fake).

    The model bytes are cached per process by :func:`yamnet_beam.model.read_model_bytes`, so a worker
    reads the file once however many DoFn instances (threads) it runs; each instance gets its own
    interpreter because interpreters are not thread-safe.
    """

    def __init__(self, uri: str, num_threads: int = 1):
        self.uri = uri
        self.num_threads = num_threads

    def load(self) -> FrameModel:
        from yamnet_beam.model import YamnetModel

        return YamnetModel.from_uri(self.uri, num_threads=self.num_threads)


def _file_size(path: str) -> int | None:
    try:
        fs, p = fsspec.core.url_to_fs(path)
        return int(fs.size(p))
    except Exception:  # the decoder will report why the file cannot be read
        return None


class _EmbedAudioFn(beam.DoFn):
    """Decodes one file in blocks, frames it and runs the model; yields frames tables and one files row."""

    def __init__(
        self,
        model_loader: ModelLoader,
        label_names: Sequence[str],
        frames_schema: pa.Schema,
        hop_samples: int = framing.HOP_SAMPLES,
        block_seconds: float = 10.0,
        frames_per_batch: int = 256,
    ):
        self._model_loader = model_loader
        self._label_names = tuple(label_names)
        self._frames_schema = frames_schema
        self._hop = hop_samples
        self._block_seconds = block_seconds
        self._frames_per_batch = frames_per_batch
        self._model: FrameModel | None = None

    def setup(self):
        t0 = time.perf_counter()
        self._model = self._model_loader.load()
        self._labels = np.asarray(self._label_names, dtype=object)
        Metrics.distribution(METRICS_NAMESPACE, "model_load_ms").update(int((time.perf_counter() - t0) * 1000))
        self._files_ok = Metrics.counter(METRICS_NAMESPACE, "files_ok")
        self._frames = Metrics.counter(METRICS_NAMESPACE, "frames")
        self._audio_ms = Metrics.counter(METRICS_NAMESPACE, "audio_ms")
        self._decode_ms = Metrics.counter(METRICS_NAMESPACE, "decode_ms")
        self._infer_ms = Metrics.counter(METRICS_NAMESPACE, "infer_ms")
        self._build_ms = Metrics.counter(METRICS_NAMESPACE, "arrow_ms")

    def process(self, item: InputFile) -> Iterator[Any]:
        path = item.path
        size = item.size_bytes if item.size_bytes is not None else _file_size(path)
        info = None
        emitted = 0
        framer = framing.StreamFramer(self._hop, framing.WINDOW_SAMPLES, self._frames_per_batch)
        try:
            with open_audio(path, block_seconds=self._block_seconds) as stream:
                info = stream.info
                blocks = stream.blocks()
                while True:
                    t0 = time.perf_counter()
                    block = next(blocks, None)
                    self._decode_ms.inc(int((time.perf_counter() - t0) * 1000))
                    batches = framer.finish() if block is None else framer.push(block)
                    for batch in batches:
                        yield self._frames_table(path, batch, framer.total_samples)
                        emitted += len(batch)
                    if block is None:
                        break
                duration_s = stream.duration_s
        except AudioDecodeError as e:
            yield self._error_row(path, size, info, emitted, e.kind, str(e))
            return
        except Exception as e:  # a bug or a model failure must still leave a row, never a lost file
            _LOG.exception("Unexpected failure on %s", path)
            reason = f"{type(e).__name__}: {e} ({traceback.format_exc(limit=2).splitlines()[-1]})"
            yield self._error_row(path, size, info, emitted, "internal", reason)
            return
        self._files_ok.inc()
        self._frames.inc(emitted)
        self._audio_ms.inc(int(duration_s * 1000))
        yield beam.pvalue.TaggedOutput(
            FILES_TAG,
            schema.file_row(
                path,
                status=schema.STATUS_OK,
                frames=emitted,
                duration_s=duration_s,
                sample_rate=info.sample_rate,
                channels=info.channels,
                format=info.format,
                decoder=info.decoder,
                size_bytes=size,
            ),
        )

    def _frames_table(self, path: str, batch: framing.FrameBatch, total_samples: int) -> pa.Table:
        t0 = time.perf_counter()
        scores, embeddings = self._model.predict(batch.frames)
        t1 = time.perf_counter()
        start_s, end_s = framing.frame_times(batch.first_frame, len(batch), self._hop)
        valid = framing.valid_samples(batch.first_frame, len(batch), total_samples, self._hop)
        table = schema.frames_table(
            self._frames_schema, path, batch.first_frame, start_s, end_s, valid, scores, embeddings, self._labels
        )
        self._infer_ms.inc(int((t1 - t0) * 1000))
        self._build_ms.inc(int((time.perf_counter() - t1) * 1000))
        return table

    def _error_row(self, path, size, info, emitted, kind, reason) -> beam.pvalue.TaggedOutput:
        Metrics.counter(METRICS_NAMESPACE, f"files_error_{kind}").inc()
        Metrics.counter(METRICS_NAMESPACE, "files_error").inc()
        if emitted:
            self._frames.inc(emitted)
        _LOG.warning("%s: %s (%s)", path, reason, kind)
        return beam.pvalue.TaggedOutput(
            FILES_TAG,
            schema.file_row(
                path,
                status=schema.STATUS_ERROR,
                error_kind=kind,
                error=reason,
                frames=emitted,
                sample_rate=info.sample_rate if info else None,
                channels=info.channels if info else None,
                format=info.format if info else None,
                decoder=info.decoder if info else None,
                size_bytes=size,
            ),
        )


class _ConcatTablesFn(beam.DoFn):
    """Merges small Arrow tables into ~``target_rows`` tables so Parquet row groups are not tiny."""

    def __init__(self, target_rows: int):
        self._target_rows = target_rows

    def start_bundle(self):
        self._tables: list[pa.Table] = []
        self._rows = 0

    def process(self, table: pa.Table) -> Iterator[pa.Table]:
        self._tables.append(table)
        self._rows += table.num_rows
        if self._rows >= self._target_rows:
            yield self._flush()

    def finish_bundle(self):
        if self._tables:
            yield beam.utils.windowed_value.WindowedValue(
                self._flush(), beam.utils.timestamp.MIN_TIMESTAMP, [beam.transforms.window.GlobalWindow()]
            )

    def _flush(self) -> pa.Table:
        table = pa.concat_tables(self._tables).combine_chunks()
        self._tables, self._rows = [], 0
        return table


class EmbedAudioFiles(beam.PTransform):
    """``InputFile`` elements -> ``{"frames": pa.Table batches, "files": files-row dicts}``.

    Every input yields exactly one files row; frames of a file that fails part-way are kept (and
    counted in its row) so the audio before a truncation is not lost.
    """

    def __init__(
        self,
        model_loader: ModelLoader,
        label_names: Sequence[str],
        frames_schema: pa.Schema,
        hop_samples: int = framing.HOP_SAMPLES,
        block_seconds: float = 10.0,
        frames_per_batch: int = 256,
    ):
        super().__init__()
        self._fn = _EmbedAudioFn(
            model_loader, label_names, frames_schema.remove_metadata(), hop_samples, block_seconds, frames_per_batch
        )

    def expand(self, inputs):
        results = inputs | "Embed" >> beam.ParDo(self._fn).with_outputs(FILES_TAG, main="frames")
        return {"frames": results.frames, "files": results[FILES_TAG]}


class WriteFrames(beam.PTransform):
    """Writes frames tables to ``<output>/frames/part-SSSSS-of-NNNNN.parquet`` (zstd) via Beam's Parquet sink."""

    def __init__(self, output_dir: str, frames_schema: pa.Schema, row_group_rows: int = 4096, num_shards: int = 0):
        super().__init__()
        self._prefix = output_dir.rstrip("/") + "/frames/part"
        self._schema = frames_schema
        self._rows = row_group_rows
        self._num_shards = num_shards

    def expand(self, tables):
        return (
            tables
            | "Rebatch" >> beam.ParDo(_ConcatTablesFn(self._rows))
            | "Write"
            >> beam.io.WriteToParquetBatched(
                self._prefix,
                self._schema,
                codec="zstd",
                file_name_suffix=".parquet",
                num_shards=self._num_shards,
            )
        )


class WriteFileStatus(beam.PTransform):
    """Writes the per-input status rows to ``<output>/files/part-*.parquet`` from Arrow batches."""

    def __init__(self, output_dir: str, files_schema: pa.Schema = schema.FILES_SCHEMA, num_shards: int = 0):
        super().__init__()
        self._prefix = output_dir.rstrip("/") + "/files/part"
        self._schema = files_schema
        self._num_shards = num_shards

    def expand(self, rows):
        plain = self._schema.remove_metadata()
        return (
            rows
            | "Batch" >> beam.BatchElements(min_batch_size=64, max_batch_size=8192)
            | "ToArrow" >> beam.Map(schema.files_table, plain)
            | "Write"
            >> beam.io.WriteToParquetBatched(
                self._prefix,
                self._schema,
                codec="zstd",
                file_name_suffix=".parquet",
                num_shards=self._num_shards,
            )
        )
