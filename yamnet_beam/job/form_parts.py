"""Cutting parts in the pipeline (:class:`FormParts`) and the plan gate (:class:`WaitForPlan`).

Inputs are counted, hashed into buckets, grouped, sorted and cut with :func:`.parts.plan_parts`' rules, so a
retried bundle cuts the same parts with the same ids; the plan (files to do) is written to
``OUTPUT/_runs/<run_id>/plan.json`` before any part is embedded.
"""

from __future__ import annotations

import apache_beam as beam

from yamnet_beam.job.options import PART_FILES, PART_MB
from yamnet_beam.job.parts import MIN_PARTS, Part, bucket_of, cut_bucket, part_shape
from yamnet_beam.table.layout import PLAN_FILE
from yamnet_beam.table.output import write_json


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

    def __init__(
        self,
        fp: str,
        part_files: int = PART_FILES,
        part_bytes: int = int(PART_MB * (1 << 20)),
        min_parts: int = MIN_PARTS,
    ):
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
        write_json(f"{self._run_uri}/{PLAN_FILE}", {"files_todo": files_todo})
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
