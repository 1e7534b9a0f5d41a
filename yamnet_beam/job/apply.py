"""``yamnet-beam apply``: score a finished output's stored embeddings with a trained head, as a Beam job.

No audio is decoded and YAMNet does not run: each committed frames part is read (path, frame, times,
embedding), scored by the head's numpy forward pass and written as ``OUTPUT/heads/<head name>/part-<id>.parquet``
(:func:`yamnet_beam.table.schema.heads_schema`). Parts are the unit of work, so it scales like the main job.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from yamnet_beam.job.checks import take_lease
from yamnet_beam.job.options import OptionsError, check_flags
from yamnet_beam.job.pipeline import RunInterrupted, is_interrupt
from yamnet_beam.job.staging import pin_worker_versions
from yamnet_beam.model.head import check_model, load_head
from yamnet_beam.table import schema
from yamnet_beam.table.layout import HEADS_DIR
from yamnet_beam.table.lease import Lease
from yamnet_beam.table.output import OutputDir
from yamnet_beam.table.parts import parquet_options
from yamnet_beam.uris import absolute_uri
from yamnet_beam.versions import check_worker, installed

COLUMNS = ["path", "frame", "start_s", "end_s", "embedding"]


class _ApplyHeadFn(beam.DoFn):
    """One frames part in, its heads part written (via a temporary name, then moved into place)."""

    def __init__(
        self, head_uri: str, head_sha256: str, dest: str, heads_schema: pa.Schema, versions: tuple[tuple[str, str], ...]
    ):
        self._head_uri, self._head_sha256 = head_uri, head_sha256
        self._dest, self._schema = dest, heads_schema
        self._versions = versions  # the launcher's: a worker on others fails before writing

    def setup(self):
        check_worker(dict(self._versions))
        self._head = load_head(self._head_uri, expected_sha256=self._head_sha256)

    def process(self, frames_part: str) -> Iterator[int]:
        fs, dest = fsspec.core.url_to_fs(self._dest)
        name = frames_part.rstrip("/").rsplit("/", 1)[-1]
        tmp = f"{dest}/_tmp-{name}"
        rows = 0
        plain = self._schema.remove_metadata()
        src_fs, src = fsspec.core.url_to_fs(frames_part)
        with src_fs.open(src, "rb") as f, fs.open(tmp, "wb") as out:
            writer = pq.ParquetWriter(out, self._schema, **parquet_options(self._schema))
            try:
                for batch in schema.parquet_file(f).iter_batches(batch_size=8192, columns=COLUMNS):
                    head = self._head.scores(schema.list_matrix(batch.column("embedding")))
                    arrays = [batch.column(c) for c in COLUMNS[:4]]
                    arrays += schema.head_arrays(head, self._head.classes, self._head.thresholds)
                    writer.write_table(pa.Table.from_arrays(arrays, schema=plain))
                    rows += batch.num_rows
                writer.close()
            except BaseException:  # Ctrl-C or a failure mid-part: the temp part is abandoned (and removed) ...
                writer.is_open = False  # ... so its writer must not close itself onto the closed stream when collected
                raise
        fs.mv(tmp, f"{dest}/{name}")
        yield rows


def apply_head(output: str, head_dir: str, argv: Sequence[str] | None = None, mode: str = "error") -> str:
    """Writes ``OUTPUT/heads/<name>/`` and returns its URI; an earlier application of the same head is
    replaced only with ``mode`` "overwrite". ``argv``: Beam pipeline options, each checked first."""
    check_flags(list(argv or []), "yamnet-beam apply", own=False)
    options = PipelineOptions(list(argv or []))
    pins = installed()
    pin_worker_versions(options, pins)  # a conflicting --requirements_file fails here, before anything changes
    out = OutputDir(absolute_uri(output))
    head_uri = absolute_uri(head_dir)
    head = load_head(head_uri)
    Lease(out, "apply").check()  # refused before any work when a live job holds the output
    frames = [f for _, parts in out.committed_with_frames() for f in parts]
    if not frames:
        raise OptionsError(f"{output} has no committed frames/ parts: pass the --output directory of a finished run")
    model_sha = out.run_value("model_sha256", "")
    check_model(head, model_sha, output)
    dest = out.head_dir(head.name)
    if mode != "overwrite" and out.fs.exists(dest):  # before the lease and any work: the one overwrite rule
        raise OptionsError(f"{output}/{HEADS_DIR}/{head.name} already exists; pass --mode overwrite to replace it")
    with take_lease(out, "apply", take_over_stale=True):  # apply is idempotent: a dead one's lease is taken over
        if out.fs.exists(dest):
            out.fs.rm(dest, recursive=True)
        out.fs.makedirs(dest, exist_ok=True)
        metadata = {
            "head_sha256": head.sha256,
            "head_name": head.name,
            "head_classes": head.classes,
            "head_uri": head_uri,
            "model_sha256": model_sha,
            "fingerprint": out.run_value("fingerprint"),
        }
        heads_schema = schema.heads_schema(head.num_classes, metadata)
        uris = [out.fs.unstrip_protocol(p) if "://" in out.uri else p for p in frames]
        dest_uri = out.fs.unstrip_protocol(dest) if "://" in out.uri else dest
        score = _ApplyHeadFn(head_uri, head.sha256, dest_uri, heads_schema, tuple(pins.items()))
        try:
            with beam.Pipeline(options=options) as p:
                _ = (
                    p
                    | "FramesParts" >> beam.Create(sorted(uris))
                    | "Spread" >> beam.Reshuffle()
                    | "ScoreEmbeddings" >> beam.ParDo(score)
                )
        except BaseException as e:
            if not is_interrupt(e):
                raise
            for tmp in out.fs.glob(f"{dest}/_tmp-*"):  # parts being written when it stopped
                out.fs.rm(tmp)
            done = len(out.fs.glob(f"{dest}/*.parquet"))
            raise RunInterrupted(
                f"interrupted; {done} of {len(frames)} parts scored in {dest_uri}; run the same command with "
                "--mode overwrite to score them all"
            ) from None
    return dest_uri
