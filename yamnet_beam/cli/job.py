"""The commands that run the job or fetch what it needs: ``run``, ``demo``, ``download``, ``version``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from yamnet_beam.cli.grammar import Parser

RUN_HELP = """Run the job: yamnet-beam run --input PATH_OR_GLOB [--input ...] --output DIR [--model URI]
[--class_map URI] [any Apache Beam option, e.g. --runner DataflowRunner --project P ...]"""


def _beam(name: str):
    from yamnet_beam.cli import beam_module

    return beam_module(name)


def run_help() -> str:
    YamnetOptions = _beam("yamnet_beam.job.options").YamnetOptions  # noqa: N806 - a class

    parser = argparse.ArgumentParser(prog="yamnet-beam run", description=RUN_HELP)
    YamnetOptions._add_argparse_args(parser)
    return (
        parser.format_help()
        + "\nAny other flag must be an Apache Beam pipeline option (DirectRunner by default); an unknown one"
        " is refused (exit 2).\n"
    )


def cmd_run(rest: Sequence[str]) -> int:
    pipeline = _beam("yamnet_beam.job.pipeline")
    if any(a in ("-h", "--help") for a in rest):
        print(run_help())
        return 0
    try:
        pipeline.run(rest)
    except pipeline.RunFailedError as e:  # the output is complete; the job still counts as failed
        print(f"yamnet-beam: failed: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from yamnet_beam.demo import clip_top_labels, make_demo_audio
    from yamnet_beam.deprecated import rewrite_deprecated
    from yamnet_beam.model import ModelError
    from yamnet_beam.model.download import default_model_uri, download_model

    options = _beam("yamnet_beam.job.options")
    rest = rewrite_deprecated(rest, options.DEPRECATED_FLAGS)
    options.check_flags(rest, "yamnet-beam demo")  # before the demo writes anything
    run = _beam("yamnet_beam.job.pipeline").run
    files = make_demo_audio(Path(args.input))
    print(f"Made {len(files)} demo files in {args.input}")
    model = args.model
    if not model:
        try:
            default_model_uri()
        except ModelError:
            print("No model found locally: downloading it once (yamnet-beam download).")
            model = str(download_model().model_path)
    argv = ["--input", args.input, "--output", args.output, "--mode", args.mode]
    run([*argv, *(["--model", model] if model else []), *rest])
    print("\nWhat YAMNet hears in each file (mean over its frames):")
    for name, label, score in clip_top_labels(args.output):
        print(f"  {name:36s} {label:24s} {score:.2f}")
    print(
        f"Ask it questions: yamnet-beam query {args.output} summary   (or: top, events, similar;"
        ' needs DuckDB: pip install "yamnet-beam[query]")'
    )
    return 0


def _cmd_download(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from yamnet_beam.model.download import main_download

    return main_download(args)


def _cmd_version(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Versions that decide the numbers, the model found, and which extras are installed."""
    from yamnet_beam.model import ModelError
    from yamnet_beam.model.download import default_model_uri
    from yamnet_beam.versions import describe

    try:
        model = default_model_uri()
    except ModelError as e:
        model = f"none found ({str(e).split('; ', 1)[-1]})"
    print(describe(model))
    return 0


def add_parsers(sub, parsers: dict[str, Parser]) -> None:
    """``run`` (its flags are pipeline options, parsed by Beam), ``demo``, ``download``, ``version``."""
    from yamnet_beam.model.download import add_download_parser

    parsers["run"] = sub.add_parser("run", help="run the job (see `yamnet-beam run --help`)", add_help=False)
    demo = sub.add_parser(
        "demo",
        help="make demo audio and run the job on it",
        description="Writes five synthetic audio files to --input and runs `yamnet-beam run` on them; any other "
        "flag is passed to run (see `yamnet-beam run --help`), e.g. --direct_running_mode multi_processing.",
    )
    demo.add_argument("--input", default="demo_audio", help="where to write the demo audio (default demo_audio)")
    demo.add_argument("--output", default="demo_output", help="the run's output directory (default demo_output)")
    demo.add_argument("--model", help="YAMNet .tflite (default: $YAMNET_BEAM_MODEL, models/, else downloaded once)")
    demo.add_argument(
        "--mode",
        choices=("error", "overwrite"),
        default="error",
        help="when --output holds results: 'error' refuses (default), 'overwrite' replaces them",
    )
    demo.set_defaults(handler=_cmd_demo, beam=True)
    parsers["demo"] = demo
    download = add_download_parser(sub)
    download.set_defaults(handler=_cmd_download)
    parsers["download"] = download
    version = sub.add_parser("version", help="versions, the model found, installed extras")
    version.set_defaults(handler=_cmd_version)
    parsers["version"] = version
