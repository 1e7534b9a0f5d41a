"""``--mode resume``: which inputs are already done, joined in the pipeline with the committed files/ rows.

:class:`ResolveResume` co-groups the listed inputs with the previous rows (:class:`ReadPreviousRows`) and
keeps what :func:`.parts.is_done` says is not done; :class:`DropSupersededRows` removes the old rows of
inputs that are redone, so no input has two rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import apache_beam as beam

from yamnet_beam.job.inputs import with_identity
from yamnet_beam.job.parts import RESUME_COLUMNS, is_done
from yamnet_beam.table.output import OutputDir
from yamnet_beam.uris import display_path

SKIPPED_TAG, SUPERSEDED_TAG = "skipped", "superseded"


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
