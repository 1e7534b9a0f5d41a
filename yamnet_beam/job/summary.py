"""The run's tally as a pipeline step (:class:`SummarizeRun` -> ``OUTPUT/_runs/<run_id>/summary.json``).

The summary is a combine written to a file, not Beam metrics: Flink reports only attempted metrics,
which double-count retried bundles; a combine's output is exactly-once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import apache_beam as beam

from yamnet_beam.job.parts import Part
from yamnet_beam.table import schema
from yamnet_beam.table.layout import SUMMARY_FILE, run_dir
from yamnet_beam.table.output import read_json, write_json

if TYPE_CHECKING:
    from yamnet_beam.job.checks import RunPlan

_LOG = logging.getLogger(__name__)


def _row_tally(row: Mapping[str, Any], this_run: bool) -> dict[str, float]:
    tally: Counter = Counter({"rows" if this_run else "skipped": 1, "frames": row["frames"] or 0})
    duration = row["duration_s"] or 0.0
    tally["duration_s"] += duration
    if this_run:
        tally["processed_s"] += duration
    if row["status"] == schema.STATUS_OK:
        tally["ok"] += 1
    else:
        tally["error"] += 1
        tally[f"error_kind:{row['error_kind']}"] += 1
    return dict(tally)


def _new_row_tally(row: Mapping[str, Any]) -> dict[str, float]:
    return _row_tally(row, True)


def _skipped_tally(row: Mapping[str, Any]) -> dict[str, float]:
    return _row_tally(row, False)


def _part_tally(part: Part) -> dict[str, float]:
    return {"parts": 1, "files_todo": len(part.files)}


class _SumTalliesFn(beam.CombineFn):
    """Sums additive tallies; an empty run still gives ``{}`` (so a resume with nothing to do has a summary)."""

    def create_accumulator(self) -> Counter:
        return Counter()

    def add_input(self, acc: Counter, tally: Mapping[str, float]) -> Counter:
        acc.update(tally)
        return acc

    def merge_accumulators(self, accs: Iterable[Counter]) -> Counter:
        total: Counter = Counter()
        for acc in accs:
            total.update(acc)
        return total

    def extract_output(self, acc: Counter) -> dict[str, float]:
        return dict(acc)


class _WriteSummaryFn(beam.DoFn):
    def __init__(self, run_uri: str):
        self._run_uri = run_uri

    def process(self, tally: dict[str, float]):
        write_json(f"{self._run_uri}/{SUMMARY_FILE}", tally)
        yield tally


class SummarizeRun(beam.PTransform):
    """Files rows of this run, skipped old rows and parts -> one tally in ``OUTPUT/_runs/<run_id>/summary.json``."""

    def __init__(self, run_uri: str):
        super().__init__()
        self._run_uri = run_uri

    def expand(self, pcolls):  # Mapping[str, PCollection]: as an annotation Beam warns it cannot check it
        tallies = [pcolls["rows"] | "TallyRows" >> beam.Map(_new_row_tally)]
        tallies.append(pcolls["parts"] | "TallyParts" >> beam.Map(_part_tally))
        if "skipped" in pcolls:
            tallies.append(pcolls["skipped"] | "TallySkipped" >> beam.Map(_skipped_tally))
        return (
            tallies
            | "AllTallies" >> beam.Flatten()
            | "SumTallies" >> beam.CombineGlobally(_SumTalliesFn())
            | "WriteSummary" >> beam.ParDo(_WriteSummaryFn(self._run_uri))
        )


def errors_by_kind(tally: Mapping[str, float]) -> dict[str, int]:
    """The ``error_kind:<kind>`` entries of a summary tally, as ``{kind: count}``."""
    return {k.split(":", 1)[1]: int(v) for k, v in tally.items() if k.startswith("error_kind:") and v}


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
