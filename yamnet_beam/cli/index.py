"""The commands about the similarity index (:mod:`yamnet_beam.index`): ``index`` (a Beam job) and
``export-hoplite`` (the embeddings as a perch-hoplite database)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from yamnet_beam.cli.grammar import Parser, add_mode, refuse_existing


def add_parsers(sub, parsers: dict[str, Parser]) -> None:
    from yamnet_beam.index.covers import PRECISIONS, SHARD_FRAMES, BuildParams

    defaults = BuildParams()
    index = sub.add_parser(
        "index",
        help="build or bring up to date OUTPUT/index/, the ANN index `query similar` uses (a Beam job)",
        description="Builds one shard per group of committed frames parts, in parallel, as a Beam job: any other "
        "flag must be an Apache Beam pipeline option (e.g. --runner, --direct_num_workers). Run again after the "
        "output changed: only parts without a current shard are indexed, stale shards are removed.",
    )
    index.add_argument("output", help="the --output directory of a run")
    index.add_argument(
        "--shard_frames", type=int, default=SHARD_FRAMES, help=f"frames per shard (default {SHARD_FRAMES})"
    )
    index.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=defaults.precision,
        help="stored vectors: f16 (default; recall@10 0.999) or i8 (half the disk; recall@10 0.98)",
    )
    index.add_argument(
        "--connectivity",
        type=int,
        default=defaults.connectivity,
        help=f"HNSW edges per vector (default {defaults.connectivity})",
    )
    index.add_argument(
        "--expansion_add",
        type=int,
        default=defaults.expansion_add,
        help=f"HNSW build candidates (default {defaults.expansion_add})",
    )
    add_mode(index, "OUTPUT/index/ holds shards built with other parameters (overwrite: rebuild every shard)")
    index.set_defaults(handler=_cmd_index, beam=True)
    parsers["index"] = index
    hoplite = sub.add_parser(
        "export-hoplite",
        help="write OUTPUT's embeddings as a perch-hoplite database (hoplite.sqlite + usearch.index)",
        description="Writes a perch-hoplite database directory: one recording per stored path, one window per "
        "frame (offsets [start_s, end_s]), unit-length float16 embeddings in its USearch index, YAMNet's config.",
    )
    hoplite.add_argument("output", help="the --output directory of a run")
    hoplite.add_argument("-o", "--out", dest="dest", required=True, help="database directory to write (local)")
    add_mode(hoplite, "the database directory")
    hoplite.set_defaults(handler=_cmd_hoplite)
    parsers["export-hoplite"] = hoplite


def _cmd_index(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from yamnet_beam.cli import beam_module
    from yamnet_beam.index.covers import BuildParams

    job = beam_module("yamnet_beam.job.index")
    params = BuildParams(args.precision, args.connectivity, args.expansion_add)
    print(job.build_index(args.output, rest, mode=args.mode, shard_frames=args.shard_frames, params=params))
    return 0


def _cmd_hoplite(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from yamnet_beam.analysis.output import QueryError, open_output
    from yamnet_beam.index.hoplite import export_hoplite

    refuse_existing(args.dest, args.mode)
    out = open_output(args.output)  # a readable run output, or one line saying what to pass
    try:
        windows = export_hoplite(out.uri, args.dest)
    except ValueError as e:
        raise QueryError(str(e)) from None
    print(f"Wrote {args.dest} ({windows} windows; open with perch_hoplite.db.sqlite_usearch_impl.SQLiteUSearchDB)")
    return 0
