"""The job's bookkeeping as pipeline steps: list inputs, resolve resume, cut parts, summarize the run.

The launcher only checks (:func:`.listing.check_inputs`); everything that grows with the number of
inputs runs on workers, so the pipeline proto and the launcher's time and memory stay flat in N:

    ListInputs -> [resume: ResolveResume (CoGroupByKey with the previous files/ rows) -> DropSupersededRows]
               -> FormParts (count, hash buckets, GroupByKey, sort, plan_parts) -> WaitForPlan -> EmbedAudio
               -> SummarizeRun (CombineGlobally -> OUTPUT/_runs/<run_id>/summary.json)

The summary is a combine written to a file, not Beam metrics: Flink reports only attempted metrics,
which double-count retried bundles; a combine's output is exactly-once.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import apache_beam as beam
import fsspec
from apache_beam.metrics import Metrics

from yamnet_beam.job.inputs import with_identity
from yamnet_beam.job.listing import (
    FANOUT_LEVELS,
    RANGE_BYTES,
    TARGET_PREFIXES,
    InputSpec,
    Prefix,
    Range,
    fan_out,
    filesystem,
    list_prefix,
    read_range,
)
from yamnet_beam.job.parts import MIN_PARTS, RESUME_COLUMNS, Part, bucket_of, cut_bucket, is_done, part_shape
from yamnet_beam.table import schema
from yamnet_beam.table.layout import RUNS_DIR
from yamnet_beam.table.output import OutputDir
from yamnet_beam.uris import display_path

NAMESPACE = "yamnet_beam"
PLAN_FILE = "plan.json"
SUMMARY_FILE = "summary.json"
SKIPPED_TAG, SUPERSEDED_TAG = "skipped", "superseded"


def run_dir(output: str, run_id: str) -> str:
    """``OUTPUT/_runs/<run_id>``: where a run's job leaves its plan and summary for the launcher."""
    return f"{output.rstrip('/')}/{RUNS_DIR}/{run_id}"


def _write_json(uri: str, value: Any) -> None:
    """Temp file then rename, so a reader never sees half a file and a retried bundle just rewrites it."""
    fs, path = fsspec.core.url_to_fs(uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with fs.open(tmp, "w") as f:
        json.dump(value, f, sort_keys=True)
    fs.mv(tmp, path)


def read_json(uri: str) -> Any | None:
    """The JSON at ``uri``, or None when it is not there (yet)."""
    fs, path = fsspec.core.url_to_fs(uri)
    fs.invalidate_cache(path.rsplit("/", 1)[0])
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as f:
        return json.load(f)


# ------------------------------------------------------------------------------------------------
# Listing


class _SpecFn(beam.DoFn):
    """Holds the specs (one small dataclass per --input); elements carry only an index into them."""

    def __init__(self, specs: Sequence[InputSpec]):
        self._specs = tuple(specs)

    def setup(self):
        self._fss: dict[int, fsspec.AbstractFileSystem] = {}
        self._listed = Metrics.counter(NAMESPACE, "inputs_listed")

    def _spec_fs(self, index: int) -> tuple[InputSpec, fsspec.AbstractFileSystem]:
        spec = self._specs[index]
        if index not in self._fss:
            self._fss[index] = filesystem(spec.uri)
        return spec, self._fss[index]


class _FanOutFn(_SpecFn):
    def __init__(self, specs: Sequence[InputSpec], target: int, levels: int, range_bytes: int):
        super().__init__(specs)
        self._target, self._levels, self._range_bytes = target, levels, range_bytes

    def process(self, index: int):
        spec, fs = self._spec_fs(index)
        for item in fan_out(spec, fs, self._target, self._levels, self._range_bytes):
            if isinstance(item, Prefix):
                yield beam.pvalue.TaggedOutput("prefixes", item)
            elif isinstance(item, Range):
                yield beam.pvalue.TaggedOutput("ranges", item)
            else:
                self._listed.inc()
                yield item


class _ListPrefixFn(_SpecFn):
    def process(self, prefix: Prefix):
        spec, fs = self._spec_fs(prefix.index)
        for item in list_prefix(spec, fs, prefix):
            self._listed.inc()
            yield (spec.index, 0), item


class _ReadManifestRangeFn(_SpecFn):
    def process(self, rng: Range):
        spec, fs = self._spec_fs(rng.index)
        for item in read_range(spec, fs, rng):
            self._listed.inc()
            yield item


class ListInputs(beam.PTransform):
    """Checked ``--input`` specs -> ``(order, InputFile)`` for every file they match, listed on workers.

    ``order`` is ``(input index, position)``: the first occurrence of a path wins (in :class:`FormParts`
    or the resume join), as in :func:`.listing.match_inputs`. Prefix listings and manifest ranges are
    reshuffled, so they spread over workers instead of being fused onto the one that fanned out.
    """

    def __init__(
        self,
        specs: Sequence[InputSpec],
        target_prefixes: int = TARGET_PREFIXES,
        fanout_levels: int = FANOUT_LEVELS,
        range_bytes: int = RANGE_BYTES,
    ):
        super().__init__()
        self._specs = tuple(specs)
        self._fan = (target_prefixes, fanout_levels, range_bytes)

    def expand(self, pbegin):
        fanned = (
            pbegin
            | "InputSpecs" >> beam.Create(list(range(len(self._specs))))
            | "FanOutInputs"
            >> beam.ParDo(_FanOutFn(self._specs, *self._fan)).with_outputs("prefixes", "ranges", main="files")
        )
        listed = (
            fanned.prefixes
            | "SpreadPrefixes" >> beam.Reshuffle()
            | "ListPrefixes" >> beam.ParDo(_ListPrefixFn(self._specs))
        )
        read = (
            fanned.ranges
            | "SpreadRanges" >> beam.Reshuffle()
            | "ReadManifestRanges" >> beam.ParDo(_ReadManifestRangeFn(self._specs))
        )
        return (fanned.files, listed, read) | "AllListed" >> beam.Flatten()


# ------------------------------------------------------------------------------------------------
# Parts


class _KeyByBucketFn(beam.DoFn):
    def __init__(self, part_files: int, min_parts: int):
        self._part_files, self._min_parts = part_files, min_parts

    def process(self, item, n: int):
        _, buckets = part_shape(n, self._part_files, self._min_parts)
        yield bucket_of(item[1].path, buckets), item


class _CutPartsFn(beam.DoFn):
    def __init__(self, fp: str, part_files: int, part_bytes: int, min_parts: int):
        self._fp, self._part_files, self._part_bytes, self._min_parts = fp, part_files, part_bytes, min_parts

    def process(self, bucket_items, n: int):
        max_files, _ = part_shape(n, self._part_files, self._min_parts)
        yield from cut_bucket(bucket_items[1], self._fp, max_files, self._part_bytes)


class FormParts(beam.PTransform):
    """``(order, InputFile)`` -> ``Part``: every distinct path in exactly one part, ids from the content.

    Files are keyed by a hash bucket of their path (about 8 parts' worth a bucket), grouped, and each
    group deduplicated, sorted and cut with :func:`.parts.plan_parts`; the count that sizes parts and
    buckets is a side input, so parts come out as a launcher-planned run's would (names may differ).
    """

    def __init__(self, fp: str, part_files: int = 64, part_bytes: int = 64 << 20, min_parts: int = MIN_PARTS):
        super().__init__()
        self._args = (fp, part_files, part_bytes, min_parts)

    def expand(self, listed):
        fp, part_files, part_bytes, min_parts = self._args
        n = beam.pvalue.AsSingleton(listed | "CountTodo" >> beam.combiners.Count.Globally())
        return (
            listed
            | "KeyByBucket" >> beam.ParDo(_KeyByBucketFn(part_files, min_parts), n)
            | "GroupBuckets" >> beam.GroupByKey()
            | "CutParts" >> beam.ParDo(_CutPartsFn(fp, part_files, part_bytes, min_parts), n)
        )


class _WritePlanFn(beam.DoFn):
    def __init__(self, run_uri: str):
        self._run_uri = run_uri

    def process(self, files_todo: int):
        _write_json(f"{self._run_uri}/{PLAN_FILE}", {"files_todo": files_todo})
        yield files_todo


def _after_plan(part: Part, _files_todo: int) -> Part:
    return part


def _after_plan_and_drops(part: Part, _files_todo: int, _rewritten: int) -> Part:
    return part


class WaitForPlan(beam.PTransform):
    """Writes ``plan.json`` (files to do, for progress) and holds parts back until it, and any drops, are done.

    In batch every runner computes a side input completely before the step that reads it, so no part
    is embedded before the plan is written, nor committed before a resume has dropped superseded rows.
    """

    def __init__(self, run_uri: str, rewritten=None):
        super().__init__()
        self._run_uri, self._rewritten = run_uri, rewritten

    def expand(self, parts):
        total = (
            parts
            | "FilesPerPart" >> beam.Map(lambda part: len(part.files))
            | "SumFiles" >> beam.CombineGlobally(sum)
            | "WritePlan" >> beam.ParDo(_WritePlanFn(self._run_uri))
        )
        if self._rewritten is None:
            return parts | "AfterPlan" >> beam.Map(_after_plan, beam.pvalue.AsSingleton(total))
        return parts | "AfterPlanAndDrops" >> beam.Map(
            _after_plan_and_drops, beam.pvalue.AsSingleton(total), beam.pvalue.AsSingleton(self._rewritten)
        )


# ------------------------------------------------------------------------------------------------
# Resume


class _ListCommittedFn(beam.DoFn):
    def process(self, output: str):
        yield from OutputDir(output).committed_with_frames()


class _ReadCommittedRowsFn(beam.DoFn):
    def __init__(self, output: str):
        self._output = output

    def process(self, part: tuple[str, tuple[str, ...]]):
        files_path, frames_paths = part
        out = OutputDir(self._output)
        [table] = out.read_parts([files_path], [*RESUME_COLUMNS, "frames", "duration_s"])
        for row in table.to_pylist():
            yield row["path"], (files_path, frames_paths, row)


class ReadPreviousRows(beam.PTransform):
    """``OUTPUT/files/`` rows of earlier runs, read on workers: ``(display path, (files part, frames parts, row))``."""

    def __init__(self, output: str):
        super().__init__()
        self._output = output

    def expand(self, pbegin):
        return (
            pbegin
            | "OutputRoot" >> beam.Create([self._output])
            | "ListFilesParts" >> beam.ParDo(_ListCommittedFn())
            | "SpreadFilesParts" >> beam.Reshuffle()
            | "ReadFilesParts" >> beam.ParDo(_ReadCommittedRowsFn(self._output))
        )


class _DecideInputFn(beam.DoFn):
    """One display path: its listings and its previous rows -> skipped (old row), or todo (+ rows to drop)."""

    def __init__(self, fp: str):
        self._fp = fp

    def process(self, element: tuple[str, Mapping[str, Iterable[Any]]]):
        key, grouped = element
        listed = list(grouped["listed"])
        if listed:  # else a row of an input this run does not name: left as it is, not counted
            yield from self._decide(key, min(listed, key=lambda x: x[0]), list(grouped["previous"]))

    def _decide(self, key: str, first: tuple[Any, Any], previous: list[tuple[str, tuple[str, ...], dict]]):
        order, item = first
        if previous:
            item = with_identity(item)  # one stat, only for inputs an earlier run saw
            if len(previous) == 1 and is_done(previous[0][2], item, self._fp):
                yield beam.pvalue.TaggedOutput(SKIPPED_TAG, previous[0][2])
                return
            for files_path, frames_paths, _ in previous:
                yield beam.pvalue.TaggedOutput(SUPERSEDED_TAG, (files_path, (frames_paths, key)))
        yield order, item


class ResolveResume(beam.PTransform):
    """``(order, InputFile)`` -> todo ``(order, InputFile)``, plus ``skipped`` old rows and ``superseded`` rows.

    A join of the listing with the previous files/ rows by display path (``CoGroupByKey``), deciding
    each path with :func:`.parts.is_done` (resume's one rule).
    """

    def __init__(self, output: str, fp: str):
        super().__init__()
        self._output, self._fp = output, fp

    def expand(self, listed):
        keyed = listed | "KeyListedByPath" >> beam.Map(lambda item: (display_path(item[1].path), item))
        previous = listed.pipeline | "ReadPreviousRows" >> ReadPreviousRows(self._output)
        return (
            {"listed": keyed, "previous": previous}
            | "JoinPreviousRows" >> beam.CoGroupByKey()
            | "DecideInputs"
            >> beam.ParDo(_DecideInputFn(self._fp)).with_outputs(SKIPPED_TAG, SUPERSEDED_TAG, main="todo")
        )


class _DropRowsFn(beam.DoFn):
    def __init__(self, output: str):
        self._output = output

    def process(self, element: tuple[str, Iterable[tuple[tuple[str, ...], str]]]):
        files_path, values = element
        values = list(values)
        frames_paths = values[0][0]
        if OutputDir(self._output).drop_rows(files_path, frames_paths, [path for _, path in values]):
            yield 1


class DropSupersededRows(beam.PTransform):
    """``(files part, (frames parts, path))`` -> the number of parts rewritten: each part once, with its own paths.

    Linear in the superseded rows: each part is read and tested against its own paths only.
    """

    def __init__(self, output: str):
        super().__init__()
        self._output = output

    def expand(self, superseded):
        return (
            superseded
            | "GroupByOldPart" >> beam.GroupByKey()
            | "RewriteOldParts" >> beam.ParDo(_DropRowsFn(self._output))
            | "CountRewrites" >> beam.CombineGlobally(sum)
        )


# ------------------------------------------------------------------------------------------------
# Summary


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
        _write_json(f"{self._run_uri}/{SUMMARY_FILE}", tally)
        yield tally


class SummarizeRun(beam.PTransform):
    """Files rows of this run, skipped old rows and parts -> one tally in ``OUTPUT/_runs/<run_id>/summary.json``."""

    def __init__(self, run_uri: str):
        super().__init__()
        self._run_uri = run_uri

    def expand(self, pcolls: Mapping[str, beam.PCollection]):
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
