"""``yamnet-beam index``: build the similarity index's shards for a finished output, as a Beam job.

The launcher plans (:mod:`yamnet_beam.index.covers`): shards still current are kept, stale ones (a part
rewritten or gone) are removed, and the parts no current shard covers are grouped into shards of about
``shard_frames`` frames. Each group is one element: a worker reads its parts and builds and commits its
shard (:func:`yamnet_beam.index.shards.build_shard`). A job killed half-way keeps the shards it committed;
run again, it plans the same groups for the rest and builds the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from yamnet_beam.index import covers
from yamnet_beam.job.checks import take_lease
from yamnet_beam.job.options import OptionsError, check_flags
from yamnet_beam.job.pipeline import RunInterrupted, is_interrupt
from yamnet_beam.job.staging import pin_worker_versions
from yamnet_beam.table.layout import INDEX_DIR, TMP_DIR
from yamnet_beam.table.lease import Lease
from yamnet_beam.table.output import OutputDir
from yamnet_beam.uris import absolute_uri
from yamnet_beam.versions import check_worker, installed


class _BuildShardFn(beam.DoFn):
    """One planned group of parts in, its shard built and committed; yields the shard's frame count."""

    def __init__(self, output: str, params: covers.BuildParams, versions: tuple[tuple[str, str], ...], build=None):
        self._output, self._params, self._versions = output, params, versions
        self._build = build  # a test's fake builder; None: yamnet_beam.index.shards.build_shard

    def setup(self):
        check_worker(dict(self._versions))
        if self._build is None:
            from yamnet_beam.index.shards import build_shard

            self._build = build_shard

    def process(self, group: tuple[str, tuple[covers.Part, ...]]) -> Iterator[int]:
        name, parts = group
        yield self._build(self._output, name, parts, self._params).rows


def _with_rows(out: OutputDir, parts: Sequence[covers.Part]) -> list[covers.Part]:
    """The parts with their row counts, from each Parquet footer."""
    found = []
    for p in parts:
        with out.fs.open(out.fs_path(p.uri), "rb") as f:
            found.append(covers.Part(p.name, p.uri, p.fingerprint, pq.ParquetFile(f).metadata.num_rows))
    return found


def _remove_except(out: OutputDir, keep: set[str]) -> int:
    """Removes every file in ``index/`` not belonging to a kept shard (stale shards, half-written ones)."""
    d = covers.index_dir(out)
    out.fs.invalidate_cache(d)
    if not out.fs.exists(d):
        return 0
    removed = 0
    for p in out.fs.ls(d, detail=False):
        if p.rsplit("/", 1)[-1] not in keep:
            out.fs.rm(p, recursive=True)
            removed += 1
    return removed


def build_index(
    output: str,
    argv: Sequence[str] | None = None,
    mode: str = "error",
    shard_frames: int = covers.SHARD_FRAMES,
    params: covers.BuildParams | None = None,
    build=None,
) -> str:
    """Brings ``OUTPUT/index/`` up to date with the table; returns a one-line account of what it did.

    ``mode`` "overwrite" rebuilds every shard; otherwise current shards are kept, and shards built with
    other parameters are refused (exit 2) rather than replaced. ``argv``: Beam pipeline options.
    """
    params = params or covers.BuildParams()
    try:
        params.check()
    except ValueError as e:
        raise OptionsError(str(e)) from None
    if shard_frames < 1:
        raise OptionsError(f"--shard_frames must be at least 1, got {shard_frames}")
    check_flags(list(argv or []), "yamnet-beam index", own=False)
    options = PipelineOptions(list(argv or []))
    pins = installed()
    pin_worker_versions(options, pins)
    out = OutputDir(absolute_uri(output))
    Lease(out, "index").check()
    if not covers.committed_parts(out):
        raise OptionsError(f"{output} has no committed frames/ parts: pass the --output directory of a finished run")
    with take_lease(out, "index", take_over_stale=True):  # idempotent: a dead index job's lease is taken over
        if mode == "overwrite" and out.fs.exists(covers.index_dir(out)):
            out.fs.rm(covers.index_dir(out), recursive=True)
        state = covers.status(out)
        other = sorted({str(s.params) for s in state.current if s.params != params})
        if other:
            raise OptionsError(
                f"{output}/{INDEX_DIR} holds shards built with {other[0]}; pass --mode overwrite to rebuild "
                "them all with the parameters given"
            )
        keep = {f for s in state.current for f in covers.shard_files(s.name)}
        _remove_except(out, keep)
        groups = covers.plan_groups(state.parts, _with_rows(out, state.uncovered), shard_frames)
        planned = [(covers.shard_name(g, params), tuple(g)) for g in groups]
        build_fn = _BuildShardFn(out.uri, params, tuple(pins.items()), build)
        if planned:
            try:
                with beam.Pipeline(options=options) as p:
                    _ = (
                        p
                        | "ShardGroups" >> beam.Create(planned)
                        | "Spread" >> beam.Reshuffle()
                        | "BuildShards" >> beam.ParDo(build_fn)
                    )
            except BaseException as e:
                if not is_interrupt(e):
                    raise
                for tmp in out.fs.glob(f"{out.path(TMP_DIR)}/index-*"):  # shards being written when it stopped
                    out.fs.rm(tmp, recursive=True)
                done = len(covers.status(out).current) - len(state.current)
                raise RunInterrupted(
                    f"interrupted; {done} of {len(planned)} shards built in {out.child_uri(INDEX_DIR)}; run the same "
                    "command to build the rest"
                ) from None
        frames = sum(p.rows for _, g in planned for p in g)
        return (
            f"{out.child_uri(INDEX_DIR)}: built {len(planned)} shards over {sum(len(g) for _, g in planned)} parts "
            f"({frames} frames), kept {len(state.current)}, removed {len(state.stale)} stale ({params.precision})"
        )
