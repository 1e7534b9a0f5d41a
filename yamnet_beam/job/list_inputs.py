"""The listing step: ``--input`` specs expanded into input files on workers (:class:`ListInputs`).

The launcher only checks each spec (:func:`.listing.check_inputs`); listing, which grows with the number of
inputs, runs here, fanned out over prefixes and manifest ranges, so the launcher's time and memory and the
pipeline proto stay flat in N. The Beam-free functions it wraps are :mod:`.listing`.
"""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam
import fsspec
from apache_beam.metrics import Metrics

from yamnet_beam.job.frames import METRICS_NAMESPACE
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


class _SpecFn(beam.DoFn):
    """Holds the specs (one small dataclass per --input); elements carry only an index into them."""

    def __init__(self, specs: Sequence[InputSpec]):
        self._specs = tuple(specs)

    def setup(self):
        self._fss: dict[int, fsspec.AbstractFileSystem] = {}
        self._listed = Metrics.counter(METRICS_NAMESPACE, "inputs_listed")

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
