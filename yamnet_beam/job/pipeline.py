"""The main job: list inputs, embed every file, write frames/ and files/, then the run's manifest.

``run()`` is the one entry point: the CLI, ``pipelines/`` and the tests all call it. The launcher checks
everything it can first (:mod:`.checks`) and takes the output's lease; listing, part cutting, resume and
the summary run in the pipeline (:mod:`.list_inputs`, :mod:`.form_parts`, :mod:`.resume`, :mod:`.summary`),
so the launcher's time, memory and the pipeline proto do not grow with the inputs.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from yamnet_beam import framing
from yamnet_beam.deprecated import rewrite_deprecated
from yamnet_beam.job.checks import RunPlan, check_writable, plan_run, take_lease
from yamnet_beam.job.embed import EmbedAudioParts
from yamnet_beam.job.form_parts import FormParts, WaitForPlan
from yamnet_beam.job.list_inputs import ListInputs
from yamnet_beam.job.options import DEPRECATED_FLAGS, YamnetOptions, check_flags
from yamnet_beam.job.progress import Progress
from yamnet_beam.job.resume import DropSupersededRows, ResolveResume
from yamnet_beam.job.staging import pin_worker_versions
from yamnet_beam.job.summary import RunSummary, SummarizeRun, read_summary
from yamnet_beam.model.labels import write_labels_csv
from yamnet_beam.model.loader import ModelLoader
from yamnet_beam.table import schema
from yamnet_beam.table.layout import LABELS_CSV, MANIFEST, PLAN_FILE, run_dir
from yamnet_beam.table.output import OutputDir, read_json

_LOG = logging.getLogger(__name__)


class RunFailedError(RuntimeError):
    """More files failed than --fail_threshold allows; the output is complete but the job counts as failed."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during the job; the message says what is committed and the command that finishes it."""


def is_interrupt(e: BaseException) -> bool:
    """A KeyboardInterrupt, or a runner's error wrapping one (the FnApiRunner re-raises it as a RuntimeError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt) or (isinstance(e, RuntimeError) and "KeyboardInterrupt" in str(e)):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def resume_command(argv: Sequence[str]) -> str:
    """``yamnet-beam run`` with the same arguments and ``--mode resume``."""
    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--mode":
            skip = True
        elif not a.startswith("--mode="):
            args.append(a)
    return shlex.join(["yamnet-beam", "run", *args, "--mode", "resume"])


def _interrupted(out: OutputDir, before: set[str], argv: Sequence[str], plan_uri: str) -> RunInterrupted:
    try:
        committed = out.committed_parts()
        total = sum(t.num_rows for t in out.read_parts(committed, ["path"]))
        this_run = sum(t.num_rows for t in out.read_parts(committed - before, ["path"]))
        plan = read_json(plan_uri)
        of = f" of {plan['files_todo']}" if plan else ""
        done = f"{total} files committed in {out.uri} ({this_run}{of} by this run)"
    except Exception as e:  # the line must still come out
        done = f"could not count the committed files of {out.uri} ({type(e).__name__})"
    return RunInterrupted(f"interrupted; {done}; finish with: {resume_command(argv)}")


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


def run(
    argv: Sequence[str] | None = None,
    test_pipeline: beam.Pipeline | None = None,
    model_loader: ModelLoader | None = None,
) -> RunSummary:
    """Runs the job to completion and returns its summary (also printed, and stored in manifest.json).

    Raises :class:`RunFailedError` after writing everything if more files failed than
    ``--fail_threshold`` allows.
    """
    argv = list(argv) if argv is not None else sys.argv[1:]
    argv = rewrite_deprecated(argv, DEPRECATED_FLAGS)
    check_flags(argv)
    options = PipelineOptions(argv)
    opts = options.view_as(YamnetOptions)
    plan = plan_run(opts)
    pin_worker_versions(options, dict(plan.settings.versions))
    out = OutputDir(plan.output)
    with take_lease(out, "run", take_over_stale=opts.mode != "error"):
        return _run_holding_lease(plan, opts, options, argv, out, test_pipeline, model_loader)


def _run_holding_lease(
    plan: RunPlan,
    opts: YamnetOptions,
    options: PipelineOptions,
    argv: Sequence[str],
    out: OutputDir,
    test_pipeline: beam.Pipeline | None,
    model_loader: ModelLoader | None,
) -> RunSummary:
    if opts.mode == "overwrite":
        out.clear()
    check_writable(out)
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
    before = out.committed_parts()
    try:
        with Progress(out, None, opts.progress_interval_s, plan_uri=plan_uri):
            p.run().wait_until_finish()
    except BaseException as e:
        if not is_interrupt(e):
            raise
        raise _interrupted(out, before, argv, plan_uri) from None
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
