"""The commands that read a finished output in place (:mod:`yamnet_beam.analysis`): ``query``, ``pool``,
``plot`` and ``report``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from yamnet_beam.cli.grammar import Parser, UsageError, add_mode, refuse_existing

OUTPUT_HELP = "the --output directory of a run"
PATH_HELP = "only paths matching this glob (* crosses /)"
THRESHOLD = 0.5  # --threshold without a head (with one: its calibrated thresholds)
HEAD_HELP = "a head directory (yamnet-beam train): its classes, from run --head or apply"


def _threshold(p: argparse.ArgumentParser, with_head: bool) -> None:
    default = f"the head's calibrated one with --head, else {THRESHOLD}" if with_head else f"{THRESHOLD}"
    p.add_argument("--threshold", type=float, help=f"score in [0, 1] marking an event (default: {default})")


def add_parsers(sub, parsers: dict[str, Parser]) -> None:
    from yamnet_beam.analysis.render import FORMATS

    def formats(extra: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        fmt = argparse.ArgumentParser(add_help=False)
        fmt.add_argument(
            "--format", choices=(*FORMATS, *extra), default="table", help="output format (default: a text table)"
        )
        fmt.add_argument("-o", "--out", dest="dest", help="write to this file (required for --format parquet)")
        add_mode(fmt, "the -o file")
        return fmt

    fmt = formats()
    query = sub.add_parser("query", help="ask a finished output questions (DuckDB over its Parquet)")
    query.add_argument("output", help=OUTPUT_HELP)
    query.set_defaults(handler=_cmd_query)
    parsers["query"] = query
    qsub = query.add_subparsers(dest="query_command", required=True, parser_class=Parser)
    top = qsub.add_parser("top", parents=[fmt], help="top classes per file, mean- and max-pooled")
    top.add_argument("--top", type=int, default=5, help="classes per file (default 5)")
    top.add_argument("--path", help=PATH_HELP)
    ev = qsub.add_parser(
        "events", parents=[formats(("raven",))], help="time ranges where a class scores above a threshold"
    )
    ev.add_argument("--class", dest="cls", required=True, help="display name, AudioSet MID or index")
    _threshold(ev, with_head=True)
    ev.add_argument("--min_duration_s", type=float, default=0.0, help="drop events shorter than this (seconds)")
    ev.add_argument("--max_gap_s", type=float, default=0.0, help="merge events separated by at most this (seconds)")
    ev.add_argument("--path", help=PATH_HELP)
    ev.add_argument(
        "--per_file", action="store_true", help="--format raven: one selection table per audio file into the -o DIR"
    )
    for p in (top, ev):
        p.add_argument("--head", help=HEAD_HELP)
    sim = qsub.add_parser("similar", parents=[fmt], help="nearest frames (or files) by embedding cosine similarity")
    what = sim.add_mutually_exclusive_group(required=True)
    what.add_argument("--to", help="FILE[:SECONDS]: a file in the output or any audio file (embedded now)")
    what.add_argument("--frame", help="PATH:INDEX of a stored frame")
    sim.add_argument("--top", type=int, default=10, help="results (default 10)")
    sim.add_argument("--files", action="store_true", help="rank files by their most similar frame")
    sim.add_argument("--path", help=PATH_HELP)
    sim.add_argument("--model", help="model for --to audio not in the output (default: the run's, manifest.json)")
    sim.add_argument("--no_cache", action="store_true", help="scan the Parquet; do not use or write the cache")
    sim.add_argument("--exact", action="store_true", help="exact search even where OUTPUT/index/ covers the parts")
    sim.add_argument(
        "--ef", type=int, help="index: HNSW candidates per query, more is slower and finds more (default 128)"
    )
    summ = qsub.add_parser("summary", parents=[fmt], help="files ok/error by kind, audio hours, frequent classes")
    summ.add_argument("--top", type=int, default=10, help="most frequent top labels to list (default 10)")
    for name, p in (("top", top), ("events", ev), ("similar", sim), ("summary", summ)):
        parsers[f"query {name}"] = p

    pool = sub.add_parser("pool", help="write the clip table: one row per file, pooled scores and embedding")
    pool.add_argument("output", help=OUTPUT_HELP)
    pool.add_argument("-o", "--out", dest="dest", help="directory (default OUTPUT/clips)")
    pool.add_argument("--path", help=PATH_HELP)
    add_mode(pool, "the clip table's directory")
    pool.set_defaults(handler=_cmd_pool)
    plot = sub.add_parser("plot", help="PNG of one file: envelope, top-class heatmap, events")
    plot.add_argument("output", help=OUTPUT_HELP)
    plot.add_argument("--path", required=True, help="the file: its stored path, or a glob matching exactly one")
    plot.add_argument("-o", "--out", dest="dest", required=True, help="PNG file to write")
    plot.set_defaults(handler=_cmd_plot)
    report = sub.add_parser("report", help="one self-contained HTML page about a run")
    report.add_argument("output", help=OUTPUT_HELP)
    report.add_argument("-o", "--out", dest="dest", required=True, help="HTML file to write")
    report.add_argument("--sample", type=int, default=6, help="files to plot (default 6)")
    report.add_argument("--head", help="a head directory (yamnet-beam train): its metrics and each file's top classes")
    report.set_defaults(handler=_cmd_report)
    for p in (plot, report):
        p.add_argument("--top", type=int, default=10, help="classes in the heatmap (default 10)")
        _threshold(p, with_head=False)
        p.add_argument("--no_audio", action="store_true", help="do not decode audio (per-frame max score instead)")
        add_mode(p, "the -o file")
    parsers.update(pool=pool, plot=plot, report=report)


def _open(args: argparse.Namespace):
    from yamnet_beam.analysis.output import open_output

    out = open_output(args.output)
    head = None
    if getattr(args, "head", None):
        from yamnet_beam.model.head import load_head

        head = load_head(args.head)
    return out, head


def _cmd_pool(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from yamnet_beam.analysis.pool import pool

    out, _ = _open(args)
    refuse_existing(args.dest or out.child_uri("clips"), args.mode, "-o" if args.dest else "the clip table")
    print(f"Wrote {pool(out, args.dest, args.path)}")
    return 0


def _one_path(out, path: str) -> str:
    """``plot --path``: a stored path, or a glob that matches exactly one (the grammar's --path is a glob)."""
    from yamnet_beam.analysis.output import QueryError

    if not any(c in path for c in "*?["):
        return path
    found = sorted({p for b in out.scan(["path"], path) for p in b.column("path").to_pylist()})
    if len(found) == 1:
        return found[0]
    if not found:
        raise QueryError(f"--path {path!r} matches no stored path")
    more = f" and {len(found) - 2} more" if len(found) > 2 else ""
    raise QueryError(f"--path {path!r} matches {len(found)} files ({', '.join(found[:2])}{more}); plot takes one")


def _picture(args: argparse.Namespace):
    """``plot`` and ``report``: the -o file checked first, then the output opened and the drawing options."""
    refuse_existing(args.dest, args.mode)
    out, head = _open(args)
    threshold = THRESHOLD if args.threshold is None else args.threshold
    return out, head, {"top_n": args.top, "threshold": threshold, "decode_audio": not args.no_audio}


def _cmd_plot(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from yamnet_beam.analysis.plot import plot_file

    out, _, opts = _picture(args)
    print(f"Wrote {plot_file(out, _one_path(out, args.path), args.dest, **opts)}")
    return 0


def _cmd_report(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from yamnet_beam.analysis.report import write_report

    out, head, opts = _picture(args)
    print(f"Wrote {write_report(out, args.dest, sample=args.sample, head=head, **opts)}")
    return 0


def _cmd_query(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from yamnet_beam.analysis import query as q
    from yamnet_beam.analysis import similar as sim
    from yamnet_beam.analysis.render import render

    if args.dest:
        refuse_existing(args.dest, args.mode)
    out, head = _open(args)
    cmd = args.query_command
    if cmd == "top":
        table = q.top_classes(out, args.top, args.path, head=head)
    elif cmd == "events":
        threshold = args.threshold if args.threshold is not None or head is not None else THRESHOLD
        table = q.events(out, args.cls, threshold, args.min_duration_s, args.path, max_gap=args.max_gap_s, head=head)
    elif cmd == "similar":
        if args.frame:
            vector = sim.frame_vector(out, *sim.parse_frame_ref(args.frame))
        else:
            vector = sim.file_vector(out, *sim.parse_file_ref(args.to), model_uri=args.model)
        if args.ef is not None and args.ef < 1:
            raise UsageError(f"--ef must be at least 1, got {args.ef}")
        table = sim.similar(
            out, vector, args.top, args.files, args.path, cache=not args.no_cache, exact=args.exact, ef=args.ef
        )
        if args.format == "table" and not args.dest:
            print(f"query: {vector.source}")
            print(f"search: {table.schema.metadata[b'search'].decode()}")
    elif cmd == "summary":
        table = q.summary(out, args.top)
    else:  # argparse's choices make this unreachable
        raise UsageError(f"unknown query {cmd!r}")
    if args.format == "raven":
        return _raven(table, args)
    if getattr(args, "per_file", False):
        raise UsageError("--per_file goes with --format raven")
    render(table, args.format, args.dest)
    return 0


def _raven(table, args: argparse.Namespace) -> int:
    """``query events --format raven``: Raven Pro selection tables (one, or ``--per_file`` one per audio file)."""
    import sys

    from yamnet_beam.analysis.raven import raven_text, write_raven

    if args.per_file and not args.dest:
        raise UsageError("--per_file writes one table per audio file: pass -o DIR")
    if not args.dest:
        sys.stdout.write(raven_text(table))
        return 0
    written = write_raven(table, args.dest, per_file=args.per_file)
    print(f"Wrote {len(written)} Raven selection table(s) to {args.dest}", file=sys.stderr)
    return 0
