"""The main job: list inputs, embed every file, write frames/ and files/, then the run's manifest.

``run()`` is the one entry point: the CLI, ``pipelines/`` and the tests all call it. Everything that
can be checked before workers start (inputs, output, model, labels, options) is checked here first,
with bounded work; listing, part planning, resume and the summary run in the pipeline
(:mod:`.planning`), so the launcher's time, memory and the pipeline proto do not grow with the inputs.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

import yamnet_beam
from yamnet_beam import framing
from yamnet_beam.audio import RESAMPLE_CHUNK
from yamnet_beam.job.listing import InputSpec, check_inputs
from yamnet_beam.job.options import OptionsError, YamnetOptions
from yamnet_beam.job.parts import fingerprint
from yamnet_beam.job.planning import (
    PLAN_FILE,
    SUMMARY_FILE,
    DropSupersededRows,
    FormParts,
    ListInputs,
    ResolveResume,
    SummarizeRun,
    WaitForPlan,
    errors_by_kind,
    read_json,
    run_dir,
)
from yamnet_beam.job.transforms import EmbedAudioParts, EmbedSettings, ModelLoader
from yamnet_beam.model import ModelError, ModelInfo, inference_path, inspect_model, read_model_bytes
from yamnet_beam.model.download import default_model_uri, resolve_class_map
from yamnet_beam.model.labels import Labels, resolve_labels, write_labels_csv
from yamnet_beam.table import schema
from yamnet_beam.table.layout import LABELS_CSV, MANIFEST, TMP_DIR
from yamnet_beam.table.lease import Lease
from yamnet_beam.table.output import OutputDir
from yamnet_beam.uris import absolute_uri

_LOG = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """Everything validated and decided before the pipeline is built."""

    output: str
    specs: list[InputSpec]  # one checked spec per --input: workers list them
    run_id: str  # names OUTPUT/_runs/<run_id>/, where the job leaves its plan and summary
    model: ModelInfo
    labels: Labels
    settings: EmbedSettings  # hop and fingerprint included
    metadata: dict[str, Any]


class RunFailedError(RuntimeError):
    """More files failed than --fail_threshold allows; the output is complete but the job counts as failed."""


@dataclass
class RunSummary:
    """What the output holds after a run, read back from its files/ table."""

    output: str
    files_matched: int
    files_ok: int
    files_error: int
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    audio_hours: float = 0.0
    wall_s: float = 0.0
    files_processed: int = 0  # by this run (the rest were already done: --mode resume)
    audio_hours_processed: float = 0.0  # by this run

    @property
    def realtime_factor(self) -> float:
        """Audio processed by this run per second of its wall time."""
        return self.audio_hours_processed * 3600 / self.wall_s if self.wall_s else 0.0

    def format(self) -> str:
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors_by_kind.items()))
        skipped = self.files_matched - self.files_processed
        return (
            f"yamnet-beam: {self.files_matched} files matched, {self.files_ok} ok, {self.files_error} error"
            f"{f' ({kinds})' if kinds else ''}"
            f"{f', {skipped} already done' if skipped else ''}; {self.audio_hours:.3f} h audio, {self.frames} frames; "
            f"wall {self.wall_s:.1f} s, {self.realtime_factor:.0f}x realtime -> {self.output}"
        )


def _check_output_path(output: str | None, mode: str) -> OutputDir:
    if not output:
        raise OptionsError("No --output given: pass a directory (local or URL) for the tables.")
    try:
        out = OutputDir(absolute_uri(output))
    except (ImportError, ValueError) as e:  # e.g. gs:// without gcsfs
        raise OptionsError(f"--output {output}: {e}. Install the filesystem's extra (e.g. yamnet-beam[gcp]).") from e
    if out.fs.isfile(out.root):
        raise OptionsError(f"--output {output} is a file; pass a directory.")
    Lease(out, "run").check()  # a live job's output: refused before anything else is looked at
    existing = out.has_results()
    if existing and mode == "error":
        raise OptionsError(
            f"--output {output} already holds results ({', '.join(existing)}/); choose a new directory, "
            "or pass --mode resume to add what is missing, or --mode overwrite to replace them."
        )
    return out


def take_lease(out: OutputDir, command: str, take_over_stale: bool) -> Lease:
    """The output's lease for this job (:mod:`yamnet_beam.table.lease`), before anything is written into it."""
    lease = Lease(out, command)
    try:
        lease.acquire(take_over_stale)
    except OSError as e:
        raise OptionsError(
            f"--output {out.uri} is not writable ({type(e).__name__}: {e}); choose another directory."
        ) from e
    return lease


def _check_writable(out: OutputDir) -> None:
    """Creates the output directory and writes a probe file, so a read-only target fails before any work."""
    probe = f"{out.root}/{TMP_DIR}/.write-test-{uuid.uuid4().hex}"
    try:
        out.fs.makedirs(f"{out.root}/{TMP_DIR}", exist_ok=True)
        out.fs.pipe(probe, b"")
        out.fs.rm(probe)
    except Exception as e:
        raise OptionsError(
            f"--output {out.uri} is not writable ({type(e).__name__}: {e}); choose another directory."
        ) from e


def _check_numbers(opts: YamnetOptions) -> int:
    try:
        hop = framing.hop_samples_from_seconds(opts.hop_seconds)
    except ValueError as e:
        raise OptionsError(f"--hop_seconds: {e}") from e
    positive = {
        "--block_seconds": opts.block_seconds,
        "--frames_per_batch": opts.frames_per_batch,
        "--row_group_rows": opts.row_group_rows,
        "--part_files": opts.part_files,
        "--part_mb": opts.part_mb,
    }
    for flag, value in positive.items():
        if not value > 0:  # also refuses NaN
            raise OptionsError(f"{flag} must be > 0, got {value}")
    non_negative = {
        "--decode_timeout_s": opts.decode_timeout_s,
        "--max_duration_s": opts.max_duration_s,
        "--shard_seconds": opts.shard_seconds,
    }
    for flag, value in non_negative.items():
        if not value >= 0:  # also refuses NaN
            raise OptionsError(f"{flag} must be >= 0 (0 disables it), got {value}")
    if not 0 <= opts.fail_threshold <= 1:
        raise OptionsError(f"--fail_threshold is a fraction of files in [0, 1], got {opts.fail_threshold}")
    return hop


def _check_head(head_dir: str | None, model: ModelInfo):
    """``--head``: loaded (integrity checked) and refused if trained on another model, before any work."""
    if not head_dir:
        return None
    from yamnet_beam.model.head import check_model, load_head

    head = load_head(absolute_uri(head_dir))
    check_model(head, model.sha256, f"--model {model.uri}")
    return head


def plan_run(opts: YamnetOptions) -> RunPlan:
    """Validates options, output, inputs, model and labels, and decides the work; changes nothing on disk."""
    hop = _check_numbers(opts)
    out = _check_output_path(opts.output, opts.mode)
    specs = check_inputs(opts.input or [])
    model_uri = absolute_uri(opts.model or default_model_uri())
    try:
        model_bytes = read_model_bytes(model_uri)
        model = inspect_model(model_bytes, uri=model_uri)
        # Not in the fingerprint: both paths give the same numbers.
        inference = "per_frame" if opts.inference == "per_frame" else inference_path(model_bytes, hop)
    except ModelError as e:
        raise ModelError(f"--model {model_uri}: {e}") from e
    labels = resolve_labels(model, resolve_class_map(opts.class_map, model_uri))
    max_duration = opts.max_duration_s or None
    fp_params = {
        "model_sha256": model.sha256,
        "runtime": model.runtime,
        "sample_rate": framing.SAMPLE_RATE,
        "window_samples": framing.WINDOW_SAMPLES,
        "hop_samples": hop,
        "downmix": "mean",
        "resampler": f"soxr-HQ, {RESAMPLE_CHUNK}-sample chunks",
        "embedding_dtype": opts.embedding_dtype,
        "max_duration_s": max_duration,
    }
    head = _check_head(opts.head, model)
    if head is not None:
        fp_params["head_sha256"] = head.sha256  # other head, other frames: resume re-processes them
    fp = fingerprint(fp_params)
    settings = EmbedSettings(
        hop_samples=hop,
        block_seconds=opts.block_seconds,
        frames_per_batch=opts.frames_per_batch,
        row_group_rows=opts.row_group_rows,
        decode_timeout_s=opts.decode_timeout_s or None,
        max_duration_s=max_duration,
        shard_seconds=opts.shard_seconds or None,
        fingerprint=fp,
        head_uri=absolute_uri(opts.head) if head is not None else None,
        head_sha256=head.sha256 if head is not None else None,
    )
    metadata = {
        **fp_params,
        "fingerprint": fp,
        "model_uri": model.uri,
        "model_kind": model.kind,
        "inference": inference,
        "labels_source": labels.source,
        "yamnet_beam_version": yamnet_beam.__version__,
        "beam_version": beam.__version__,
        **({"head_uri": absolute_uri(opts.head), "head_name": head.name, "head_classes": head.classes} if head else {}),
    }
    return RunPlan(out.uri, specs, uuid.uuid4().hex, model, labels, settings, metadata)


def build_pipeline(p: beam.Pipeline, plan: RunPlan, opts: YamnetOptions, model_loader: ModelLoader | None = None):
    """Adds the job's steps to ``p`` and returns the PCollection of files rows.

    ``model_loader`` is the seam to inject a fake model in tests.
    """
    frames_schema = schema.frames_schema(
        opts.embedding_dtype,
        plan.model.num_classes,
        plan.model.embedding_dim,
        plan.metadata,
        head_classes=len(plan.metadata.get("head_classes", ())),
    )
    run_uri = run_dir(plan.output, plan.run_id)
    fp = plan.settings.fingerprint
    todo = p | "ListInputs" >> ListInputs(plan.specs)
    summarized, rewritten = {}, None
    if opts.mode == "resume":
        resolved = todo | "ResolveResume" >> ResolveResume(plan.output, fp)
        todo, summarized["skipped"] = resolved.todo, resolved.skipped
        rewritten = resolved.superseded | "DropSupersededRows" >> DropSupersededRows(plan.output)
    parts = todo | "FormParts" >> FormParts(fp, opts.part_files, int(opts.part_mb * (1 << 20)))
    rows = (
        parts
        | "WaitForPlan" >> WaitForPlan(run_uri, rewritten)
        | "EmbedAudio"
        >> EmbedAudioParts(
            model_loader
            or ModelLoader(plan.model.uri, expected_sha256=plan.model.sha256, inference=plan.metadata["inference"]),
            plan.labels.names,
            frames_schema,
            schema.files_schema(plan.metadata),
            plan.output,
            plan.settings,
        )
    )
    _ = {**summarized, "rows": rows, "parts": parts} | "SummarizeRun" >> SummarizeRun(run_uri)
    return rows


def read_summary(plan: RunPlan, wall_s: float) -> tuple[RunSummary, int]:
    """The job's own tally (``_runs/<run_id>/summary.json``) as a :class:`RunSummary`, and its part count.

    A missing file means the job did not finish; rows that differ from the files planned mean an input
    was lost or doubled, which must not pass silently.
    """
    tally = read_json(f"{run_dir(plan.output, plan.run_id)}/{SUMMARY_FILE}")
    if tally is None:
        raise RuntimeError(f"The job finished without writing its summary under {run_dir(plan.output, plan.run_id)}")
    rows, todo = int(tally.get("rows", 0)), int(tally.get("files_todo", 0))
    if rows != todo:
        _LOG.error("The job wrote %d files rows for %d planned inputs: see %s/files/", rows, todo, plan.output)
    summary = RunSummary(
        output=plan.output,
        files_matched=rows + int(tally.get("skipped", 0)),
        files_ok=int(tally.get("ok", 0)),
        files_error=int(tally.get("error", 0)),
        errors_by_kind=errors_by_kind(tally),
        frames=int(tally.get("frames", 0)),
        audio_hours=tally.get("duration_s", 0.0) / 3600,
        wall_s=wall_s,
        files_processed=rows,
        audio_hours_processed=tally.get("processed_s", 0.0) / 3600,
    )
    return summary, int(tally.get("parts", 0))


def _write_manifest(plan: RunPlan, opts: YamnetOptions, summary: RunSummary, started: _dt.datetime, parts: int) -> None:
    out = OutputDir(plan.output)
    manifest = {
        **plan.metadata,
        "model": {k: v for k, v in asdict(plan.model).items() if k != "embedded_labels"},
        "framing": {
            "sample_rate": framing.SAMPLE_RATE,
            "window_samples": framing.WINDOW_SAMPLES,
            "hop_samples": plan.settings.hop_samples,
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
            "files_processed_this_run": summary.files_processed,
            "audio_hours_processed_this_run": summary.audio_hours_processed,
            "parts_this_run": parts,
        },
        "mode": opts.mode,
        "run_id": plan.run_id,
        "started_at": started.isoformat(),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "wall_s": summary.wall_s,
    }
    with out.fs.open(out.path(MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True, default=str)


class _Progress:
    """Reports progress while a run goes on, from what it has committed: runner-agnostic (local,
    Dataflow or Flink alike), since files/ parts are the record of what is done."""

    def __init__(
        self, out: OutputDir, total_files: int | None, interval_s: float, stream=None, plan_uri: str | None = None
    ):
        """``total_files`` None: read from ``plan_uri`` (the job's plan.json) once the job has written it."""
        self._out, self._total, self._interval, self._plan_uri = out, total_files, interval_s, plan_uri
        self._stream = stream or sys.stderr
        self._seen = out.committed_parts()
        self._files = 0
        self._audio_s = 0.0
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="yamnet-beam-progress", daemon=True)

    def __enter__(self):
        if self._interval > 0 and (self._total or self._plan_uri):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def poll(self) -> str:
        new = self._out.committed_parts() - self._seen
        for table in self._out.read_parts(new, ["duration_s"]):
            self._files += table.num_rows
            self._audio_s += sum(d for d in table.column("duration_s").to_pylist() if d)
        self._seen |= new
        wall = time.perf_counter() - self._t0
        if self._total is None and self._plan_uri:
            plan = read_json(self._plan_uri)
            self._total = None if plan is None else int(plan["files_todo"])
        total = "?" if self._total is None else self._total
        listing = ", listing inputs" if self._total is None else ""
        return (
            f"yamnet-beam: {self._files}/{total} files done{listing}, {self._audio_s / 3600:.2f} h audio, "
            f"{self._audio_s / wall if wall else 0:.0f}x realtime, {wall:.0f} s"
        )

    def _loop(self):
        while not self._stop.wait(self._interval):
            try:
                print(self.poll(), file=self._stream, flush=True)
            except Exception as e:  # progress must never break a run
                _LOG.debug("progress poll failed: %s", e)


def run(
    argv: Sequence[str] | None = None,
    test_pipeline: beam.Pipeline | None = None,
    model_loader: ModelLoader | None = None,
) -> RunSummary:
    """Runs the job to completion and returns its summary (also printed, and stored in manifest.json).

    Raises :class:`RunFailedError` after writing everything if more files failed than
    ``--fail_threshold`` allows.
    """
    options = PipelineOptions(list(argv) if argv is not None else sys.argv[1:])
    opts = options.view_as(YamnetOptions)
    plan = plan_run(opts)
    out = OutputDir(plan.output)
    with take_lease(out, "run", take_over_stale=opts.mode != "error"):
        return _run_holding_lease(plan, opts, options, out, test_pipeline, model_loader)


def _run_holding_lease(
    plan: RunPlan,
    opts: YamnetOptions,
    options: PipelineOptions,
    out: OutputDir,
    test_pipeline: beam.Pipeline | None,
    model_loader: ModelLoader | None,
) -> RunSummary:
    if opts.mode == "overwrite":
        out.clear()
    _check_writable(out)
    removed = out.remove_uncommitted()  # leftovers of a killed run: never visible to readers, now gone
    if removed:
        _LOG.warning("Removed %d uncommitted files of an interrupted run", len(removed))
    _LOG.info(
        "Checked %d inputs; listing and planning run in the job; model %s (%s)",
        len(plan.specs),
        plan.model.uri,
        plan.model.sha256[:12],
    )
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    # Worker processes the runner starts from here (DirectRunner multi_processing, portable
    # PROCESS/EXTERNAL pools started by hand inherit it too) read this at start-up: one malloc arena
    # per decode thread retained 90-130 MB per worker on a 2-hour file (390 -> 300 MB measured).
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    p = test_pipeline if test_pipeline is not None else beam.Pipeline(options=options)
    build_pipeline(p, plan, opts, model_loader)
    plan_uri = f"{run_dir(plan.output, plan.run_id)}/{PLAN_FILE}"
    with _Progress(out, None, opts.progress_interval_s, plan_uri=plan_uri):
        p.run().wait_until_finish()
    wall_s = time.perf_counter() - t0
    out.remove_uncommitted()  # the run is over: nothing is in flight, so _tmp/ goes (retried attempts' leftovers too)
    write_labels_csv(plan.labels, out.child_uri(LABELS_CSV))
    summary, parts = read_summary(plan, wall_s)
    _write_manifest(plan, opts, summary, started, parts)
    print(summary.format())
    total = summary.files_ok + summary.files_error
    if total and summary.files_error / total > opts.fail_threshold:
        raise RunFailedError(
            f"{summary.files_error} of {total} files failed ({summary.files_error / total:.1%}), more than "
            f"--fail_threshold={opts.fail_threshold}; see {plan.output}/files/ (status = 'error') for the reasons."
        )
    return summary
