"""``yamnet-beam``: the command line. Owns argument grammar, dispatch, what reaches the terminal and exit codes
(0 done, 1 the job failed, 2 a bad command or environment: one line saying what to do, 130 Ctrl-C).

May import every stage (it is the top); nothing imports it. :mod:`.grammar` holds the grammar and the table of
commands, :mod:`.job` the commands that run or fetch (run, demo, download, version), :mod:`.tables` those that
read an output (query, pool, plot, report), :mod:`.heads` those about your own classes (train, apply, export),
:mod:`.index` the similarity index (index, export-hoplite), :mod:`.explore` the local web app (explore).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence

from yamnet_beam.cli.grammar import COMMAND_ALIASES, FLAG_ALIASES, GRAMMAR, Parser, command_table
from yamnet_beam.deprecated import rewrite_deprecated
from yamnet_beam.errors import UserError

VERBOSE_ENV = "YAMNET_BEAM_VERBOSE"  # set by -v; worker processes inherit it


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


def beam_module(name: str):
    """Imports a module of ours that imports Apache Beam, without Beam's import-time noise."""
    with _import_noise_at_debug():
        return importlib.import_module(name)


def _guard(fn) -> int:
    """User errors end with one readable line and exit code 2, not a traceback; Ctrl-C with one line, 130."""
    try:
        return fn()
    except UserError as e:  # every error a user can mend (a typo's UsageError included)
        print(f"yamnet-beam: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # what is kept and how to go on; the shell's 128 + SIGINT
        print(f"yamnet-beam: {e or 'interrupted'}", file=sys.stderr)
        return 130


def build_parser() -> tuple[Parser, dict[str, Parser]]:
    """The ``yamnet-beam`` parser and each command's own (query's subcommands as ``query top`` ...)."""
    from yamnet_beam.cli import explore, heads, index, job, tables

    parser = Parser(
        prog="yamnet-beam",
        description="Audio collections -> Parquet tables of YAMNet scores and embeddings, and tools over them.",
        epilog=f"commands:\n{command_table()}\n\ngrammar:\n{GRAMMAR}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show third-party INFO/WARNING lines")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    parsers: dict[str, Parser] = {}
    for module in (job, tables, heads, index, explore):
        module.add_parsers(sub, parsers)
    return parser, parsers


def _split_verbose(argv: Sequence[str]) -> tuple[list[str], bool]:
    end = list(argv).index("--") if "--" in argv else len(argv)
    verbose = any(a in ("-v", "--verbose") for a in argv[:end])
    return [a for i, a in enumerate(argv) if i >= end or a not in ("-v", "--verbose")], verbose


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] in COMMAND_ALIASES:
        print(f"yamnet-beam: {argv[0]} is deprecated; use {COMMAND_ALIASES[argv[0]]}", file=sys.stderr)
        argv = [COMMAND_ALIASES[argv[0]], *argv[1:]]
    if argv and argv[0] in FLAG_ALIASES:
        argv = [argv[0], *rewrite_deprecated(argv[1:], FLAG_ALIASES[argv[0]])]
    if argv[:1] == ["run"]:  # every flag is a pipeline option: Beam's parser and our check (job.options)
        from yamnet_beam.cli.job import cmd_run

        return _guard(lambda: cmd_run(argv[1:]))
    return _guard(lambda: _parse_and_run(argv))


def _parse_and_run(argv: list[str]) -> int:
    parser, parsers = build_parser()
    args, rest = parser.parse_known_args(argv)
    if not getattr(args, "beam", False):  # apply and demo hand the rest to Beam, which checks it
        own = parsers.get(f"{args.command} {getattr(args, 'query_command', '')}".strip(), parsers[args.command])
        own.refuse_unknown(rest)
    return args.handler(args, rest)


def _not_an_interrupt(record: logging.LogRecord) -> bool:
    """Ctrl-C is reported once, by the command, not as a runner's ERROR with the traceback of where it landed."""
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, KeyboardInterrupt) and "KeyboardInterrupt [while running" not in record.getMessage()


def _configure_logging(verbose: bool, console: bool) -> None:
    """Default: our warnings and errors; Beam's only when they are errors. -v: everything from INFO up."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=console)
    logging.getLogger().setLevel(level)
    logging.getLogger("apache_beam").setLevel(logging.INFO if verbose else logging.ERROR)
    for handler in logging.getLogger().handlers:
        if _not_an_interrupt not in handler.filters:
            handler.addFilter(_not_an_interrupt)


@contextlib.contextmanager
def _native_stderr_to_log() -> Iterator[Callable[[], str | None]]:
    """File descriptor 2 goes to a nameless temporary file; Python's own ``sys.stderr`` keeps the terminal.

    What writes to the descriptor, below Python, is not the user's: LiteRT's C++ logger ("INFO: Created
    TensorFlow Lite XNNPACK delegate for CPU.", no severity setting reaches it from Python), gRPC, and the
    worker processes a runner starts (they inherit it, with their INFO logging and start-up warnings).
    Yields ``keep()``: a named copy of it, for a command that failed. Nameless, it leaves nothing behind.
    """
    sys.stderr.flush()
    log = tempfile.TemporaryFile()
    terminal = os.dup(2)
    python_stderr = sys.stderr
    sys.stderr = io.TextIOWrapper(
        io.FileIO(terminal, "w", closefd=False), encoding=python_stderr.encoding, errors="backslashreplace",
        line_buffering=True,
    )  # fmt: skip
    os.dup2(log.fileno(), 2)

    def keep() -> str | None:
        log.seek(0)
        data = log.read()
        if not data.strip():
            return None
        fd, path = tempfile.mkstemp(prefix="yamnet-beam-", suffix=".log")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path

    try:
        yield keep
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)
        os.close(terminal)
        sys.stderr = python_stderr
        log.close()


def main(argv: Sequence[str] | None = None, *, console: bool | None = None) -> int:
    """Runs one command; returns its exit code. ``console`` (default: when reading ``sys.argv``) sends what
    native code and worker processes write to stderr to a log file, unless ``-v``."""
    console = argv is None if console is None else console
    argv, verbose = _split_verbose(list(sys.argv[1:] if argv is None else argv))
    if argv[:1] in (["--version"], ["-V"]):  # the usual spelling of the `version` command
        argv = ["version", *argv[1:]]
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    if not console or verbose:
        _configure_logging(verbose, console=False)
        return _dispatch(argv)
    with _native_stderr_to_log() as keep:
        _configure_logging(verbose, console=True)
        try:
            return _dispatch(argv)
        except BaseException as e:  # a crash (its traceback follows): what workers said may explain it
            path = None if isinstance(e, (KeyboardInterrupt, SystemExit)) else keep()
            if path:
                print(f"yamnet-beam: workers' and native libraries' messages: {path} (-v shows them)", file=sys.stderr)
            raise
