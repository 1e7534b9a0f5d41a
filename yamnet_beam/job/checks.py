"""The launcher's checks: everything that can be found wrong before workers start, with bounded work.

:func:`plan_run` checks the options, the output (not a file, not held by a live job: :mod:`yamnet_beam.table.lease`),
the inputs (:func:`.listing.check_inputs`), the model, its labels and a ``--head``, and decides the run's
fingerprint and settings; it changes nothing on disk. :func:`take_lease` then makes the output this job's.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

import yamnet_beam
from yamnet_beam import framing
from yamnet_beam.audio import RESAMPLE_CHUNK
from yamnet_beam.job.frames import EmbedSettings
from yamnet_beam.job.listing import InputSpec, check_inputs
from yamnet_beam.job.options import OptionsError, YamnetOptions
from yamnet_beam.job.parts import fingerprint
from yamnet_beam.model import ModelError, ModelInfo, inference_path, inspect_model, read_model_bytes
from yamnet_beam.model.download import default_model_uri, resolve_class_map
from yamnet_beam.model.labels import Labels, resolve_labels
from yamnet_beam.table.layout import TMP_DIR
from yamnet_beam.table.lease import Lease
from yamnet_beam.table.output import OutputDir
from yamnet_beam.uris import absolute_uri
from yamnet_beam.versions import installed

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


def check_writable(out: OutputDir) -> None:
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
        hop = framing.hop_samples_from_seconds(opts.hop_s)
    except ValueError as e:
        raise OptionsError(f"--hop_s: {e}") from e
    positive = {
        "--block_s": opts.block_s,
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
        "--shard_s": opts.shard_s,
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
    versions = installed()
    settings = EmbedSettings(
        hop_samples=hop,
        block_seconds=opts.block_s,
        frames_per_batch=opts.frames_per_batch,
        row_group_rows=opts.row_group_rows,
        decode_timeout_s=opts.decode_timeout_s or None,
        max_duration_s=max_duration,
        shard_seconds=opts.shard_s or None,
        fingerprint=fp,
        head_uri=absolute_uri(opts.head) if head is not None else None,
        head_sha256=head.sha256 if head is not None else None,
        versions=tuple(versions.items()),
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
        "versions": versions,
        **({"head_uri": absolute_uri(opts.head), "head_name": head.name, "head_classes": head.classes} if head else {}),
    }
    return RunPlan(out.uri, specs, uuid.uuid4().hex, model, labels, settings, metadata)
