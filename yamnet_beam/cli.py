"""``yamnet-beam`` command line: ``run`` the job, ``download-model``, a ``demo`` on audio it makes itself, and
``query``/``pool``/``plot``/``report`` over a finished output."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from yamnet_beam.errors import UserError
from yamnet_beam.model import ModelError


@contextlib.contextmanager
def _import_noise_at_debug() -> Iterator[None]:
    """Warnings logged on the root logger while this block imports (Beam's probe for the GCP client
    libraries says "apitools not found ..." to every user who did not install them) become DEBUG
    records: shown with ``--log-level DEBUG``-style configuration, not on every command. Warnings
    logged later, while the job runs, and errors are untouched."""
    root = logging.getLogger()

    def demote(record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return root.getEffectiveLevel() <= logging.DEBUG

    root.addFilter(demote)
    try:
        yield
    finally:
        root.removeFilter(demote)


def _beam_module(name: str):
    """Imports a module of ours that imports Apache Beam, without Beam's import-time noise."""
    with _import_noise_at_debug():
        return importlib.import_module(name)


RUN_HELP = """Run the job: yamnet-beam run --input PATH_OR_GLOB [--input ...] --output DIR [--model URI]
[--class_map URI] [any Apache Beam option, e.g. --runner DataflowRunner --project P ...]"""


def _run_help() -> str:
    YamnetOptions = _beam_module("yamnet_beam.job.options").YamnetOptions  # noqa: N806 - a class

    parser = argparse.ArgumentParser(prog="yamnet-beam run", description=RUN_HELP)
    YamnetOptions._add_argparse_args(parser)
    return parser.format_help() + "\nAny other flag is passed to Apache Beam (DirectRunner by default).\n"


def _cmd_run(rest: Sequence[str]) -> int:
    pipeline = _beam_module("yamnet_beam.job.pipeline")
    RunFailedError, run = pipeline.RunFailedError, pipeline.run  # noqa: N806 - a class

    if any(a in ("-h", "--help") for a in rest):
        print(_run_help())
        return 0
    try:
        run(rest)
    except RunFailedError as e:  # the output is complete; the job still counts as failed
        print(f"yamnet-beam: failed: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from yamnet_beam.demo import clip_top_labels, make_demo_audio
    from yamnet_beam.model.download import default_model_uri, download_model

    run = _beam_module("yamnet_beam.job.pipeline").run

    audio_dir = Path(args.audio_dir)
    files = make_demo_audio(audio_dir)
    print(f"Made {len(files)} demo files in {audio_dir}")
    try:
        default_model_uri()
    except ModelError:
        print("No model found locally: downloading it once (yamnet-beam download-model).")
        download_model()
    run(["--input", str(audio_dir), "--output", args.output, "--mode", "overwrite", *rest])
    print("\nWhat YAMNet hears in each file (mean over its frames):")
    for name, label, score in clip_top_labels(args.output):
        print(f"  {name:36s} {label:24s} {score:.2f}")
    print(
        f"Ask it questions: yamnet-beam query {args.output} summary   (or: top, events, similar;"
        ' needs DuckDB: pip install "yamnet-beam[query]")'
    )
    return 0


def _cmd_version() -> int:
    from yamnet_beam.model.download import default_model_uri
    from yamnet_beam.versions import describe

    try:
        model = default_model_uri()
    except ModelError:
        model = "not found (yamnet-beam download-model, or set YAMNET_BEAM_MODEL)"
    print(describe(model))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="yamnet-beam", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the job (see `yamnet-beam run --help`)", add_help=False)
    demo = sub.add_parser("demo", help="make demo audio and run the job on it")
    demo.add_argument("--audio_dir", default="demo_audio", help="where to write the demo audio")
    demo.add_argument("--output", default="demo_output", help="output directory")
    from yamnet_beam.model.download import add_download_parser, main_download

    add_download_parser(sub)
    _add_downstream_parsers(sub)
    _add_customize_parsers(sub)
    sub.add_parser("version", help="print the versions a bug report needs (package, Beam, LiteRT, model, extras)")

    if argv[:1] in (["--version"], ["-V"]):
        argv = ["version"]
    if argv[:1] == ["run"]:
        return _guard(lambda: _cmd_run(argv[1:]))
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        return _guard(lambda: _cmd_demo(args, rest))
    if rest and args.command != "apply":  # apply is a Beam job: the rest are its pipeline options
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    if args.command in ("query", "pool", "plot", "report"):
        return _guard(lambda: _cmd_downstream(args))
    if args.command in ("train", "apply", "export"):
        return _guard(lambda: _cmd_customize(args, rest))
    if args.command == "version":
        return _cmd_version()
    return _guard(lambda: main_download(args))


def _add_downstream_parsers(sub) -> None:
    """``query``, ``pool``, ``plot`` and ``report``: read a finished output in place (yamnet_beam.analysis)."""
    from yamnet_beam.analysis.render import FORMATS

    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--format", choices=FORMATS, default="table", help="output format (default: a text table)")
    fmt.add_argument("-o", "--out", dest="dest", help="write to this file (required for --format parquet)")
    query = sub.add_parser("query", help="ask a finished output questions (DuckDB over its Parquet)")
    query.add_argument("output", help="the --output directory of a run")
    qsub = query.add_subparsers(dest="query_command", required=True)
    top = qsub.add_parser("top", parents=[fmt], help="top classes per file, mean- and max-pooled")
    top.add_argument("-k", type=int, default=5, help="classes per file (default 5)")
    top.add_argument("--path", help="only paths matching this glob (* crosses /)")
    ev = qsub.add_parser("events", parents=[fmt], help="time ranges where a class scores above a threshold")
    ev.add_argument("--class", dest="cls", required=True, help="display name, AudioSet MID or index")
    ev.add_argument("--threshold", type=float, help="score in [0, 1] (with --head: default the calibrated one)")
    ev.add_argument("--min_duration", type=float, default=0.0, help="drop events shorter than this (seconds)")
    ev.add_argument("--max_gap", type=float, default=0.0, help="merge events separated by at most this (seconds)")
    ev.add_argument("--path", help="only paths matching this glob")
    for p in (top, ev):
        p.add_argument("--head", help="a head directory (yamnet-beam train): its classes, from run --head or apply")
    sim = qsub.add_parser("similar", parents=[fmt], help="nearest frames (or files) by embedding cosine similarity")
    what = sim.add_mutually_exclusive_group(required=True)
    what.add_argument("--to", help="FILE[:SECONDS]: a file in the output or any audio file (embedded now)")
    what.add_argument("--frame", help="PATH:INDEX of a stored frame")
    sim.add_argument("-k", type=int, default=10, help="results (default 10)")
    sim.add_argument("--files", action="store_true", help="rank files by their most similar frame")
    sim.add_argument("--path", help="search only paths matching this glob")
    sim.add_argument("--model", help="model for --to audio not in the output (default: the run's, manifest.json)")
    sim.add_argument("--no_cache", action="store_true", help="scan the Parquet; do not use or write the cache")
    summ = qsub.add_parser("summary", parents=[fmt], help="files ok/error by kind, audio hours, frequent classes")
    summ.add_argument("--top", type=int, default=10, help="most frequent top labels to list")
    pool = sub.add_parser("pool", help="write the clip table: one row per file, pooled scores and embedding")
    pool.add_argument("output")
    pool.add_argument("-o", "--out", dest="dest", help="directory (default OUTPUT/clips)")
    pool.add_argument("--path", help="only paths matching this glob")
    plot = sub.add_parser("plot", help="PNG of one file: envelope, top-class heatmap, events")
    plot.add_argument("output")
    plot.add_argument("--path", required=True, help="the file's path as stored in the output")
    plot.add_argument("-o", "--out", dest="dest", required=True, help="PNG file to write")
    report = sub.add_parser("report", help="one self-contained HTML page about a run")
    report.add_argument("output")
    report.add_argument("-o", "--out", dest="dest", required=True, help="HTML file to write")
    report.add_argument("--sample", type=int, default=6, help="files to plot (default 6)")
    report.add_argument("--head", help="a head directory (yamnet-beam train): its metrics and each file's top classes")
    for p in (plot, report):
        p.add_argument("--top", type=int, default=10, help="classes in the heatmap (default 10)")
        p.add_argument("--threshold", type=float, default=0.5, help="score marking an event (default 0.5)")
        p.add_argument("--no_audio", action="store_true", help="do not decode audio (per-frame max score instead)")


def _cmd_downstream(args: argparse.Namespace) -> int:
    from yamnet_beam.analysis import query as q
    from yamnet_beam.analysis import similar as sim
    from yamnet_beam.analysis.output import open_output
    from yamnet_beam.analysis.pool import pool
    from yamnet_beam.analysis.render import render

    out = open_output(args.output)
    head = None
    if getattr(args, "head", None):
        from yamnet_beam.model.head import load_head

        head = load_head(args.head)
    if args.command == "pool":
        print(f"Wrote {pool(out, args.dest, args.path)}")
        return 0
    if args.command in ("plot", "report"):
        opts = {"top_n": args.top, "threshold": args.threshold, "decode_audio": not args.no_audio}
        if args.command == "plot":
            from yamnet_beam.analysis.plot import plot_file

            print(f"Wrote {plot_file(out, args.path, args.dest, **opts)}")
        else:
            from yamnet_beam.analysis.report import write_report

            print(f"Wrote {write_report(out, args.dest, sample=args.sample, head=head, **opts)}")
        return 0
    cmd = args.query_command
    if cmd == "top":
        table = q.top_classes(out, args.k, args.path, head=head)
    elif cmd == "events":
        table = q.events(out, args.cls, args.threshold, args.min_duration, args.path, max_gap=args.max_gap, head=head)
    elif cmd == "similar":
        if args.frame:
            vector = sim.frame_vector(out, *sim.parse_frame_ref(args.frame))
        else:
            vector = sim.file_vector(out, *sim.parse_file_ref(args.to), model_uri=args.model)
        table = sim.similar(out, vector, args.k, args.files, args.path, cache=not args.no_cache)
        if args.format == "table" and not args.dest:
            print(f"query: {vector.source}")
    else:
        table = q.summary(out, args.top)
    render(table, args.format, args.dest)
    return 0


def _add_customize_parsers(sub) -> None:
    """``train``, ``apply`` and ``export``: your own classes on YAMNet's embeddings (yamnet_beam.customize)."""
    train = sub.add_parser("train", help="train a head (your classes) on an output's embeddings, cross-validated")
    train.add_argument("output", help="the --output directory of a run over the labelled files")
    train.add_argument("--labels", required=True, help="CSV path,label[,fold]; repeat a path for several labels")
    train.add_argument("-o", "--out", dest="dest", required=True, help="head directory to write")
    train.add_argument("--head_type", choices=("linear", "mlp"), default="linear", help="default: linear")
    train.add_argument("--folds", type=int, default=5, help="cross-validation folds over files (default 5)")
    train.add_argument(
        "--target_precision", type=float, help="thresholds: most recall at this precision (default max F1)"
    )
    train.add_argument(
        "--min_frame_score",
        type=float,
        default=0.0,
        help="fit only on frames whose top YAMNet score reaches this (default 0: off; it did not help, see README)",
    )
    train.add_argument("--hidden", type=int, default=256, help="mlp: hidden units (default 256)")
    train.add_argument("--seed", type=int, default=0, help="fold shuffling and mlp initialisation (default 0)")
    apply = sub.add_parser(
        "apply",
        help="score a finished output's stored embeddings with a head (a Beam job: any Beam option, e.g. --runner)",
    )
    apply.add_argument("output")
    apply.add_argument("--head", required=True, help="head directory written by `yamnet-beam train`")
    export = sub.add_parser("export", help="YAMNet + a head as one .tflite with metadata for MediaPipe")
    export.add_argument("head", help="head directory written by `yamnet-beam train`")
    export.add_argument("-o", "--out", dest="dest", required=True, help=".tflite file to write")
    export.add_argument("--custom_only", action="store_true", help="only the custom scores as output")
    export.add_argument("--model", help="the YAMNet .tflite the head was trained on (default: the default model)")
    export.add_argument(
        "--class_map", help="YAMNet class map CSV (default: $YAMNET_BEAM_CLASS_MAP, then beside the model)"
    )


def _cmd_customize(args: argparse.Namespace, beam_args: Sequence[str] = ()) -> int:
    if args.command == "train":
        from yamnet_beam.customize.metrics import format_metrics
        from yamnet_beam.customize.train import train

        head = train(
            args.output,
            args.labels,
            args.dest,
            head_type=args.head_type,
            folds=args.folds,
            target_precision=args.target_precision,
            min_frame_score=args.min_frame_score,
            hidden=args.hidden,
            seed=args.seed,
        )
        print(format_metrics(head))
        print(f"Wrote {args.dest} (head.json, weights.npz, metrics.json)")
        return 0
    if args.command == "apply":
        apply = _beam_module("yamnet_beam.job.apply")
        print(f"Wrote {apply.apply_head(args.output, args.head, beam_args)}")
        return 0
    from yamnet_beam.customize.export import export_head

    print(f"Wrote {export_head(args.head, args.dest, args.model, args.class_map, args.custom_only)}")
    return 0


def _guard(fn) -> int:
    """User errors end with one readable line and exit code 2, not a traceback."""
    try:
        return fn()
    except UserError as e:  # "fix your command or environment": one line, exit 2; anything else keeps its traceback
        print(f"yamnet-beam: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
