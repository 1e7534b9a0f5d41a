"""The main job: match inputs, embed every file, write frames/ and files/, then the run's manifest.

``run()`` is the one entry point: the CLI, ``pipelines/`` and the tests all call it. Everything that
can be checked before workers start (inputs, output, model, labels, options) is checked here first.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

import yamnet_beam
from yamnet_beam import framing, schema
from yamnet_beam.download import default_class_map_uri, default_model_uri
from yamnet_beam.inputs import InputFile, match_inputs
from yamnet_beam.labels import Labels, resolve_labels, write_labels_csv
from yamnet_beam.model import ModelInfo, inspect_model, read_model_bytes
from yamnet_beam.options import OptionsError, YamnetOptions
from yamnet_beam.transforms import EmbedAudioFiles, ModelLoader, WriteFileStatus, WriteFrames

_LOG = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """Everything validated before the pipeline is built."""

    output: str
    inputs: list[InputFile]
    model: ModelInfo
    labels: Labels
    hop_samples: int
    metadata: dict[str, Any]


@dataclass
class RunSummary:
    """What a finished run did, read back from its files/ table."""

    output: str
    files_matched: int
    files_ok: int
    files_error: int
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    audio_hours: float = 0.0
    wall_s: float = 0.0

    @property
    def realtime_factor(self) -> float:
        return self.audio_hours * 3600 / self.wall_s if self.wall_s else 0.0

    def format(self) -> str:
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors_by_kind.items()))
        return (
            f"yamnet-beam: {self.files_matched} files matched, {self.files_ok} ok, {self.files_error} error"
            f"{f' ({kinds})' if kinds else ''}; {self.audio_hours:.3f} h audio, {self.frames} frames; "
            f"wall {self.wall_s:.1f} s, {self.realtime_factor:.0f}x realtime -> {self.output}"
        )


def _output_fs(output: str) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(output)


def _check_output(output: str | None, mode: str) -> str:
    if not output:
        raise OptionsError("No --output given: pass a directory (local or URL) for the tables.")
    fs, path = _output_fs(output)
    if fs.isfile(path):
        raise OptionsError(f"--output {output} is a file; pass a directory.")
    existing = [d for d in ("frames", "files") if fs.exists(f"{path.rstrip('/')}/{d}")]
    if existing and mode == "error":
        raise OptionsError(
            f"--output {output} already holds results ({', '.join(existing)}/); choose a new directory "
            "or pass --mode overwrite to replace them."
        )
    return output.rstrip("/")


def _resolve_class_map(explicit: str | None, model_uri: str) -> str | None:
    if explicit:
        return explicit
    found = default_class_map_uri()
    if found:
        return found
    fs, path = fsspec.core.url_to_fs(model_uri)
    sibling = path.rsplit("/", 1)[0] + "/yamnet_class_map.csv"
    return fs.unstrip_protocol(sibling) if fs.exists(sibling) else None


def plan_run(opts: YamnetOptions) -> RunPlan:
    """Validates options, output, inputs, model and labels; raises before any work is started."""
    try:
        hop = framing.hop_samples_from_seconds(opts.hop_seconds)
    except ValueError as e:
        raise OptionsError(f"--hop_seconds: {e}") from e
    if opts.block_seconds <= 0:
        raise OptionsError(f"--block_seconds must be > 0, got {opts.block_seconds}")
    if opts.frames_per_batch <= 0 or opts.row_group_rows <= 0:
        raise OptionsError("--frames_per_batch and --row_group_rows must be positive.")
    output = _check_output(opts.output, opts.mode)
    inputs = match_inputs(opts.input or [])
    model_uri = opts.model or default_model_uri()
    model = inspect_model(read_model_bytes(model_uri), uri=model_uri)
    labels = resolve_labels(model, _resolve_class_map(opts.class_map, model_uri))
    metadata = {
        "model_uri": model.uri,
        "model_sha256": model.sha256,
        "model_kind": model.kind,
        "runtime": model.runtime,
        "labels_source": labels.source,
        "sample_rate": framing.SAMPLE_RATE,
        "window_samples": framing.WINDOW_SAMPLES,
        "hop_samples": hop,
        "embedding_dtype": opts.embedding_dtype,
        "yamnet_beam_version": yamnet_beam.__version__,
        "beam_version": beam.__version__,
    }
    return RunPlan(output, inputs, model, labels, hop, metadata)


def build_pipeline(p: beam.Pipeline, plan: RunPlan, opts: YamnetOptions, model_loader: ModelLoader | None = None):
    """Adds the job's steps to ``p``; ``model_loader`` is the seam to inject a fake model in tests."""
    frames_schema = schema.frames_schema(
        opts.embedding_dtype, plan.model.num_classes, plan.model.embedding_dim, plan.metadata
    )
    files_schema = schema.files_schema(plan.metadata)
    results = (
        p
        | "MatchedInputs" >> beam.Create(plan.inputs)
        | "SpreadFiles" >> beam.Reshuffle()
        | "EmbedAudio"
        >> EmbedAudioFiles(
            model_loader or ModelLoader(plan.model.uri),
            plan.labels.names,
            frames_schema,
            plan.hop_samples,
            opts.block_seconds,
            opts.frames_per_batch,
        )
    )
    results["frames"] | "WriteFrames" >> WriteFrames(plan.output, frames_schema, opts.row_group_rows, opts.num_shards)
    results["files"] | "WriteFiles" >> WriteFileStatus(plan.output, files_schema, opts.num_shards)
    return results


def _clear_previous(output: str) -> None:
    fs, path = _output_fs(output)
    for d in ("frames", "files"):
        target = f"{path}/{d}"
        if fs.exists(target):
            fs.rm(target, recursive=True)


def summarize(output: str, files_matched: int | None = None, wall_s: float = 0.0) -> RunSummary:
    """Reads files/ back: the table, not the runner's metrics, is the record of what happened."""
    fs, path = _output_fs(output)
    table = pq.read_table(f"{path}/files", filesystem=fs, columns=["status", "error_kind", "frames", "duration_s"])
    status = table.column("status").to_pylist()
    kinds = Counter(
        k for s, k in zip(status, table.column("error_kind").to_pylist(), strict=True) if s == schema.STATUS_ERROR
    )
    durations = [d for d in table.column("duration_s").to_pylist() if d]
    return RunSummary(
        output=output,
        files_matched=files_matched if files_matched is not None else table.num_rows,
        files_ok=status.count(schema.STATUS_OK),
        files_error=status.count(schema.STATUS_ERROR),
        errors_by_kind=dict(kinds),
        frames=sum(table.column("frames").to_pylist()),
        audio_hours=sum(durations) / 3600,
        wall_s=wall_s,
    )


def _write_manifest(plan: RunPlan, opts: YamnetOptions, summary: RunSummary, started: _dt.datetime) -> None:
    fs, path = _output_fs(plan.output)
    manifest = {
        **plan.metadata,
        "model": {k: v for k, v in asdict(plan.model).items() if k != "embedded_labels"},
        "framing": {
            "sample_rate": framing.SAMPLE_RATE,
            "window_samples": framing.WINDOW_SAMPLES,
            "hop_samples": plan.hop_samples,
            "frame_count": "1 + ceil(max(0, n - window) / hop)",
        },
        "options": opts.get_all_options(drop_default=True, retain_unknown_options=True),
        "counts": {
            "files_matched": summary.files_matched,
            "files_ok": summary.files_ok,
            "files_error": summary.files_error,
            "errors_by_kind": summary.errors_by_kind,
            "frames": summary.frames,
            "audio_hours": summary.audio_hours,
        },
        "started_at": started.isoformat(),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "wall_s": summary.wall_s,
    }
    with fs.open(f"{path}/manifest.json", "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True, default=str)


def run(
    argv: Sequence[str] | None = None,
    test_pipeline: beam.Pipeline | None = None,
    model_loader: ModelLoader | None = None,
) -> RunSummary:
    """Runs the job to completion and returns its summary (also printed, and stored in manifest.json)."""
    options = PipelineOptions(list(argv) if argv is not None else sys.argv[1:])
    opts = options.view_as(YamnetOptions)
    plan = plan_run(opts)
    if opts.mode == "overwrite":
        _clear_previous(plan.output)
    _LOG.info("Matched %d inputs; model %s (%s)", len(plan.inputs), plan.model.uri, plan.model.sha256[:12])
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    p = test_pipeline if test_pipeline is not None else beam.Pipeline(options=options)
    build_pipeline(p, plan, opts, model_loader)
    p.run().wait_until_finish()
    wall_s = time.perf_counter() - t0
    write_labels_csv(plan.labels, f"{plan.output}/labels.csv")
    summary = summarize(plan.output, len(plan.inputs), wall_s)
    _write_manifest(plan, opts, summary, started)
    print(summary.format())
    return summary
