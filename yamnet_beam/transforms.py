"""Beam adapters: DoFns and PTransforms that wrap the Beam-free audio, framing, model, schema and parts code.

The DoFns only adapt: they hold picklable configuration, build heavy state in ``setup()`` and turn
every failure into a ``files/`` row with a counter, so no input is ever silently dropped.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from yamnet_beam import framing, schema
from yamnet_beam.audio import AudioDecodeError, display_path, open_audio
from yamnet_beam.inputs import InputFile, with_identity
from yamnet_beam.parts import Part, PartWriter

_LOG = logging.getLogger(__name__)
METRICS_NAMESPACE = "yamnet_beam"


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


@dataclass(frozen=True)
class EmbedSettings:
    """Per-file processing parameters (picklable, validated by the pipeline before use)."""

    hop_samples: int = framing.HOP_SAMPLES
    block_seconds: float = 10.0
    frames_per_batch: int = 256
    row_group_rows: int = 4096
    decode_timeout_s: float | None = None
    max_duration_s: float | None = None
    fingerprint: str = ""


def _warning(n_samples: int, nonfinite: int, clipped: int = 0) -> str | None:
    notes = []
    if n_samples < framing.WINDOW_SAMPLES:
        notes.append(
            f"shorter than one window ({n_samples / framing.SAMPLE_RATE:.3f} s < 0.975 s): one zero-padded frame"
        )
    if nonfinite:
        notes.append(f"{nonfinite} NaN/Inf sample values replaced by 0")
    if clipped:
        notes.append(f"{clipped} absurdly large sample values (beyond +-2**63) clipped")
    return "; ".join(notes) or None


class _EmbedPartFn(beam.DoFn):
    """Embeds every file of a part, streaming frames into the part's Parquet file, then commits the part.

    Yields one files row per input (also written to ``files/``), for counting and summaries.
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
        self._model_loader = model_loader
        self._label_names = tuple(label_names)
        self._frames_schema = frames_schema
        self._files_schema = files_schema
        self._output = output
        self._settings = settings
        self._model: FrameModel | None = None

    def setup(self):
        t0 = time.perf_counter()
        self._model = self._model_loader.load()
        self._labels = np.asarray(self._label_names, dtype=object)
        self._plain_schema = self._frames_schema.remove_metadata()
        Metrics.distribution(METRICS_NAMESPACE, "model_load_ms").update(int((time.perf_counter() - t0) * 1000))
        self._files_ok = Metrics.counter(METRICS_NAMESPACE, "files_ok")
        self._files_error = Metrics.counter(METRICS_NAMESPACE, "files_error")
        self._frames = Metrics.counter(METRICS_NAMESPACE, "frames")
        self._audio_ms = Metrics.counter(METRICS_NAMESPACE, "audio_ms")
        self._decode_ms = Metrics.counter(METRICS_NAMESPACE, "decode_ms")
        self._infer_ms = Metrics.counter(METRICS_NAMESPACE, "infer_ms")
        self._build_ms = Metrics.counter(METRICS_NAMESPACE, "arrow_ms")
        self._write_ms = Metrics.counter(METRICS_NAMESPACE, "write_ms")
        self._nonfinite = Metrics.counter(METRICS_NAMESPACE, "nonfinite_samples")

    def process(self, part: Part) -> Iterator[dict[str, Any]]:
        writer = PartWriter(
            self._output, part.id, self._frames_schema, self._files_schema, self._settings.row_group_rows
        )
        try:
            rows = [self.embed_file(item, part.id, writer) for item in part.files]
            t0 = time.perf_counter()
            writer.commit(rows)
            self._write_ms.inc(int((time.perf_counter() - t0) * 1000))
        except BaseException:
            writer.abort()
            raise
        yield from rows

    def embed_file(self, item: InputFile, part_id: str, writer: PartWriter) -> dict[str, Any]:
        """Streams one file through decode, framing and the model into ``writer``; returns its files row."""
        s = self._settings
        item = with_identity(item)
        path = display_path(item.path)
        identity = dict(
            size_bytes=item.size_bytes, mtime=item.mtime, etag=item.etag, fingerprint=s.fingerprint, part=part_id
        )
        framer = framing.StreamFramer(s.hop_samples, framing.WINDOW_SAMPLES, s.frames_per_batch)
        emitted = 0
        info = None
        stream = None
        try:
            with open_audio(
                item.path,
                block_seconds=s.block_seconds,
                timeout_s=s.decode_timeout_s,
                max_duration_s=s.max_duration_s,
            ) as stream:
                info = stream.info
                blocks = stream.blocks()
                while True:
                    t0 = time.perf_counter()
                    block = next(blocks, None)
                    self._decode_ms.inc(int((time.perf_counter() - t0) * 1000))
                    for batch in framer.finish() if block is None else framer.push(block):
                        writer.add(self._frames_table(path, batch, framer.total_samples))
                        emitted += len(batch)
                    if block is None:
                        break
        except AudioDecodeError as e:
            try:  # the audio decoded before the failure (or the limit) is kept, framed as if the file ended there
                if framer.total_samples and not framer.finished:
                    for batch in framer.finish():
                        writer.add(self._frames_table(path, batch, framer.total_samples))
                        emitted += len(batch)
            except Exception:
                _LOG.exception("Could not keep the frames decoded before the failure of %s", path)
            return self._error_row(path, identity, info, stream, emitted, e.kind, str(e))
        except Exception as e:  # a bug or a model failure must still leave a row, never a lost file
            _LOG.exception("Unexpected failure on %s", path)
            reason = f"{type(e).__name__}: {e} ({traceback.format_exc(limit=2).splitlines()[-1]})"
            return self._error_row(path, identity, info, stream, emitted, "internal", reason)
        self._files_ok.inc()
        self._frames.inc(emitted)
        self._audio_ms.inc(int(stream.duration_s * 1000))
        self._nonfinite.inc(stream.nonfinite_samples)
        return schema.file_row(
            path,
            status=schema.STATUS_OK,
            frames=emitted,
            duration_s=stream.duration_s,
            sample_rate=info.sample_rate,
            channels=info.channels,
            format=info.format,
            decoder=info.decoder,
            warning=_warning(framer.total_samples, stream.nonfinite_samples, stream.clipped_samples),
            nonfinite_samples=stream.nonfinite_samples,
            **identity,
        )

    def _frames_table(self, path: str, batch: framing.FrameBatch, total_samples: int) -> pa.Table:
        hop = self._settings.hop_samples
        t0 = time.perf_counter()
        scores, embeddings = self._model.predict(batch.frames)
        t1 = time.perf_counter()
        start_s, end_s = framing.frame_times(batch.first_frame, len(batch), hop)
        valid = framing.valid_samples(batch.first_frame, len(batch), total_samples, hop)
        table = schema.frames_table(
            self._plain_schema, path, batch.first_frame, start_s, end_s, valid, scores, embeddings, self._labels
        )
        self._infer_ms.inc(int((t1 - t0) * 1000))
        self._build_ms.inc(int((time.perf_counter() - t1) * 1000))
        return table

    def _error_row(self, path, identity, info, stream, emitted, kind, reason) -> dict[str, Any]:
        Metrics.counter(METRICS_NAMESPACE, f"files_error_{kind}").inc()
        self._files_error.inc()
        self._frames.inc(emitted)
        _LOG.warning("%s (%s)", reason, kind)  # the reason names the file
        return schema.file_row(
            path,
            status=schema.STATUS_ERROR,
            error_kind=kind,
            error=reason,
            frames=emitted,
            duration_s=stream.duration_s if stream is not None and info is not None else None,
            sample_rate=info.sample_rate if info else None,
            channels=info.channels if info else None,
            format=info.format if info else None,
            decoder=info.decoder if info else None,
            nonfinite_samples=stream.nonfinite_samples if stream is not None else None,
            **identity,
        )


class EmbedAudioParts(beam.PTransform):
    """``Part`` elements -> files rows; each part's frames and files are committed to ``output`` as it ends.

    Every input yields exactly one files row; frames of a file that fails part-way (truncated, too
    long, timed out) are kept and counted in its row, so the audio before the failure is not lost.
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
        self._fn = _EmbedPartFn(model_loader, label_names, frames_schema, files_schema, output, settings)

    def expand(self, parts):
        return parts | "SpreadParts" >> beam.Reshuffle() | "EmbedAndCommit" >> beam.ParDo(self._fn)
