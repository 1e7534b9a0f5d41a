"""The one grammar every ``yamnet-beam`` command follows, the table of commands, earlier spellings kept as
deprecated aliases, and the argument parser that holds to it (a bad argument: one line, exit 2)."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence

from yamnet_beam.errors import UserError

GRAMMAR = """\
yamnet-beam COMMAND [OUTPUT] [flags]; snake_case flags; one-word commands (export-TOOL: to a tool's format).
  reads      a run's output directory is the first positional argument; a head is --head DIR
  writes     -o/--out PATH (run and demo write their tables to --output DIR, a pipeline option like --input)
  overwrite  --mode error (default) refuses to replace what exists, --mode overwrite replaces it (run: also resume)
  filters    --path GLOB over the stored paths (* crosses /)
  counts     --top N: how many classes or results to show
  thresholds --threshold SCORE: the head's calibrated one with --head, else 0.5
  seconds    every duration flag ends in _s (--hop_s, --min_duration_s, --decode_timeout_s ...)
  -v/--verbose shows third-party INFO/WARNING lines and native-library messages; Ctrl-C exits 130"""

# name, usage, what it does: the README's table and `yamnet-beam --help` come from here.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("run", "run --input PATH... --output DIR [--model URI] [Beam flags]", "the job: audio -> frames/ + files/"),
    ("demo", "demo [--input DIR] [--output DIR] [--model URI] [run flags]", "make demo audio and run the job on it"),
    ("download", "download [-o DIR] [--model_url URL]", "fetch and check the YAMNet model and class map"),
    ("version", "version", "versions of the package, Beam, LiteRT, numpy, pyarrow; the model found"),
    ("query", "query OUTPUT top|events|similar|summary [flags]", "ask a finished output questions (DuckDB)"),
    ("pool", "pool OUTPUT [-o DIR] [--path GLOB]", "the clip table: one row per file"),
    ("plot", "plot OUTPUT --path GLOB -o PNG", "one file: envelope, top-class heatmap, events"),
    ("report", "report OUTPUT -o HTML [--head DIR]", "one self-contained HTML page about a run"),
    ("train", "train OUTPUT --labels CSV -o DIR", "train a head (your classes) on the embeddings"),
    ("apply", "apply OUTPUT --head DIR [Beam flags]", "score stored embeddings with a head (a Beam job)"),
    ("export", "export --head DIR -o TFLITE", "YAMNet + a head as one .tflite for MediaPipe"),
    ("index", "index OUTPUT [--precision f16|i8] [Beam flags]", "the ANN index query similar uses (a Beam job)"),
    ("export-hoplite", "export-hoplite OUTPUT -o DB_DIR", "the embeddings as a perch-hoplite database"),
    (
        "explore",
        "explore OUTPUT [--head DIR] [--host ADDR] [--port N]",
        "web app: search, listen, label, train, re-rank",
    ),
)

# Earlier spellings: accepted, with one line naming the new one. A value with a space replaces a bare flag.
COMMAND_ALIASES = {"download-model": "download"}
FLAG_ALIASES: dict[str, dict[str, str]] = {
    "query": {"-k": "--top", "--min_duration": "--min_duration_s", "--max_gap": "--max_gap_s"},
    "download": {"--dest": "--out", "--force": "--mode overwrite"},
    "demo": {"--audio_dir": "--input"},
}


class UsageError(UserError, ValueError):
    """A command line that does not follow the grammar; the message names the argument and the fix."""


def nearest_flag(name: str, flags: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(name, list(flags), n=1, cutoff=0.6)
    return close[0] if close else None


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (no usage block), an unknown flag gets its nearest spelling, and a
    flag is spelled out (no abbreviations: ``--fold`` is a typo of ``--folds``, not a way to write it)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")

    def flags(self) -> list[str]:
        return [s for a in self._actions for s in a.option_strings]

    def refuse_unknown(self, rest: Sequence[str]) -> None:
        if not rest:
            return
        first = next((a for a in rest if a.startswith("-")), rest[0])
        if not first.startswith("-"):
            raise UsageError(f"unexpected argument {first!r} (see {self.prog} --help)")
        name = first.split("=", 1)[0]
        close = nearest_flag(name, self.flags())
        hint = f"did you mean {close}?" if close else f"see {self.prog} --help"
        raise UsageError(f"unknown option {name}: {hint}")


def add_mode(parser: argparse.ArgumentParser, what: str = "the file or directory it writes") -> None:
    parser.add_argument(
        "--mode",
        choices=("error", "overwrite"),
        default="error",
        help=f"when {what} exists: 'error' refuses (default), 'overwrite' replaces it",
    )


def refuse_existing(path: str, mode: str, flag: str = "-o") -> None:
    """The overwrite rule: an existing target is replaced only with ``--mode overwrite``."""
    import fsspec

    from yamnet_beam.uris import absolute_uri

    fs, p = fsspec.core.url_to_fs(absolute_uri(path))
    if mode != "overwrite" and fs.exists(p):
        raise UsageError(f"{flag} {path} already exists; choose another path, or pass --mode overwrite to replace it")


def command_table() -> str:
    """The commands as aligned text (``yamnet-beam --help``)."""
    width = max(len(u) for _, u, _ in COMMANDS)
    return "\n".join(f"  yamnet-beam {u:{width}}  {what}" for _, u, what in COMMANDS)
