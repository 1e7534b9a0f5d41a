"""``yamnet-beam`` command line: ``run`` the job, ``download-model``, and a ``demo`` on audio it makes itself."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from yamnet_beam.download import DownloadError
from yamnet_beam.inputs import InputError
from yamnet_beam.labels import LabelsError
from yamnet_beam.model import ModelError
from yamnet_beam.options import OptionsError

# Errors that mean "fix your command or environment": one line, exit 2. Anything else keeps its traceback.
USER_ERRORS = (DownloadError, InputError, LabelsError, ModelError, OptionsError)

RUN_HELP = """Run the job: yamnet-beam run --input PATH_OR_GLOB [--input ...] --output DIR [--model URI]
[--class_map URI] [any Apache Beam option, e.g. --runner DataflowRunner --project P ...]"""


def _run_help() -> str:
    from yamnet_beam.options import YamnetOptions

    parser = argparse.ArgumentParser(prog="yamnet-beam run", description=RUN_HELP)
    YamnetOptions._add_argparse_args(parser)
    return parser.format_help() + "\nAny other flag is passed to Apache Beam (DirectRunner by default).\n"


def _cmd_run(rest: Sequence[str]) -> int:
    from yamnet_beam.pipeline import run

    if any(a in ("-h", "--help") for a in rest):
        print(_run_help())
        return 0
    run(rest)
    return 0


def _cmd_demo(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from yamnet_beam.demo import clip_top_labels, make_demo_audio
    from yamnet_beam.download import default_model_uri, download_model
    from yamnet_beam.model import ModelError as _ModelError
    from yamnet_beam.pipeline import run

    audio_dir = Path(args.audio_dir)
    files = make_demo_audio(audio_dir)
    print(f"Made {len(files)} demo files in {audio_dir}")
    try:
        default_model_uri()
    except _ModelError:
        print("No model found locally: downloading it once (yamnet-beam download-model).")
        download_model()
    run(["--input", str(audio_dir), "--output", args.output, "--mode", "overwrite", *rest])
    print("\nWhat YAMNet hears in each file (mean over its frames):")
    for name, label, score in clip_top_labels(args.output):
        print(f"  {name:36s} {label:24s} {score:.2f}")
    print(
        f"Query it: duckdb -c \"SELECT path, top_label, count(*) n FROM '{args.output}/frames/*.parquet' "
        'GROUP BY ALL ORDER BY path, n DESC"'
    )
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
    from yamnet_beam.download import add_download_parser, main_download

    add_download_parser(sub)

    if argv[:1] == ["run"]:
        return _guard(lambda: _cmd_run(argv[1:]))
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        return _guard(lambda: _cmd_demo(args, rest))
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    return _guard(lambda: main_download(args))


def _guard(fn) -> int:
    """User errors end with one readable line and exit code 2, not a traceback."""
    try:
        return fn()
    except USER_ERRORS as e:
        print(f"yamnet-beam: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
