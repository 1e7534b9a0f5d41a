"""The job's options: one ``PipelineOptions`` subclass, so every flag works on every runner."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from yamnet_beam.errors import UserError
from yamnet_beam.framing import HOP_SAMPLES, SAMPLE_RATE
from yamnet_beam.model.batched import DEFAULT_BATCH
from yamnet_beam.table.parts import ROW_GROUP_ROWS
from yamnet_beam.table.schema import EMBEDDING_DTYPES

# Defaults used outside the option parser too (the embed step's settings, part planning): stated here once.
BLOCK_SECONDS = 10.0
PART_FILES = 64
PART_MB = 64.0


class OptionsError(UserError, ValueError):
    """A bad option or environment found before any work started; the message says what to do."""


# Earlier spellings, still accepted with one line naming the new one (every duration flag ends in _s).
DEPRECATED_FLAGS = {"--hop_seconds": "--hop_s", "--block_seconds": "--block_s", "--shard_seconds": "--shard_s"}


class YamnetOptions(PipelineOptions):
    """Options of ``yamnet-beam run``; any other Beam option (``--runner``, ``--project`` ...) passes through."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--input",
            action="append",
            default=None,
            help="Audio to process: a file, a directory (recursed), a glob (with **), or a manifest "
            "(.txt one URI per line; .csv/.parquet with a 'path' column). Local or any fsspec URL. Repeatable.",
        )
        parser.add_argument("--output", default=None, help="Output directory (local or fsspec URL).")
        parser.add_argument(
            "--model",
            default=None,
            help="YAMNet .tflite (path or URL). Default: $YAMNET_BEAM_MODEL, then models/yamnet.tflite "
            "(fetched by `yamnet-beam download`).",
        )
        parser.add_argument(
            "--class_map",
            default=None,
            help="CSV index,mid,display_name; used when the model carries no label file. "
            "Default: $YAMNET_BEAM_CLASS_MAP, then next to the model, then the default places.",
        )
        parser.add_argument(
            "--hop_s",
            type=float,
            default=HOP_SAMPLES / SAMPLE_RATE,
            help="Frame hop in seconds (YAMNet: 0.48). Must be > 0 and <= 0.975.",
        )
        parser.add_argument(
            "--embedding_dtype",
            choices=EMBEDDING_DTYPES,
            default="float32",
            help="Storage type of the 1024-D embedding; float16 halves it.",
        )
        parser.add_argument(
            "--block_s",
            type=float,
            default=BLOCK_SECONDS,
            help=f"Decode block length; bounds memory per file (default {BLOCK_SECONDS:g} s).",
        )
        parser.add_argument(
            "--frames_per_batch",
            type=int,
            default=DEFAULT_BATCH,
            help=f"Frames per CNN invoke on the batched path (default {DEFAULT_BATCH}, measured best), per model "
            "call on the per-frame one.",
        )
        parser.add_argument(
            "--inference",
            choices=("auto", "per_frame"),
            default="auto",
            help="auto: the batched path (shared STFT rows, CNN in batches; bit-identical) where the model's "
            "graph and the hop allow it, per-frame invoke elsewhere; per_frame: always one invoke per frame.",
        )
        parser.add_argument(
            "--row_group_rows",
            type=int,
            default=ROW_GROUP_ROWS,
            help=f"Target rows per Parquet row group of the frames table (default {ROW_GROUP_ROWS}).",
        )
        parser.add_argument(
            "--mode",
            choices=("error", "overwrite", "resume"),
            default="error",
            help="When --output already holds results: 'error' refuses (default), 'overwrite' replaces them, "
            "'resume' skips inputs already done (same path, size, mtime/etag and parameters) and adds the rest.",
        )
        parser.add_argument(
            "--part_files",
            type=int,
            default=PART_FILES,
            help=f"At most this many inputs per output part (default {PART_FILES}): the unit of work and of resume.",
        )
        parser.add_argument(
            "--part_mb",
            type=float,
            default=PART_MB,
            help=f"About this many MB of input per output part (default {PART_MB:g}); a larger file gets its own.",
        )
        parser.add_argument(
            "--shard_s",
            type=float,
            default=300,
            help="Split PCM-like files (WAV, AIFF, FLAC) longer than 1.5x this into segments of about this "
            "length, processed in parallel (their frames equal a whole-file pass); 0 disables.",
        )
        parser.add_argument(
            "--decode_timeout_s",
            type=float,
            default=900,
            help="Per-file (per-segment for split files) limit on time spent waiting for the decoder; "
            "0 disables it. Frames decoded before the limit are kept; the file is an error 'timeout'.",
        )
        parser.add_argument(
            "--max_duration_s",
            type=float,
            default=0,
            help="Process at most this many seconds of each file (0: no limit). Longer files keep the frames "
            "of their first --max_duration_s seconds and end as error 'too_long'.",
        )
        parser.add_argument(
            "--progress_interval_s",
            type=float,
            default=30,
            help="Print a progress line (files done/total, audio hours, realtime factor) this often; 0: never.",
        )
        parser.add_argument(
            "--head",
            default=None,
            help="A head directory from `yamnet-beam train`: adds its head_scores, head_top_label, head_top_score "
            "and head_labels (classes over their calibrated thresholds) to frames/.",
        )
        parser.add_argument(
            "--fail_threshold",
            type=float,
            default=1.0,
            help="Fail the job (exit code 1) when more than this fraction of files end in error (default 1.0: never).",
        )


class _RefusingParser(_BeamArgumentParser):
    """Beam's parser (it knows ValueProvider arguments) that raises instead of printing usage and exiting."""

    def error(self, message: str):
        raise OptionsError(message)


def _known_flags_parser(own: bool) -> argparse.ArgumentParser:
    """Every flag Beam accepts (each PipelineOptions subclass, as Beam itself collects them), ours with ``own``."""
    parser = _RefusingParser(allow_abbrev=False, add_help=False)
    seen = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        if own or cls is not YamnetOptions:
            cls._add_argparse_args(parser)
    return parser


def check_flags(argv: Sequence[str], command: str = "yamnet-beam run", own: bool = True) -> None:
    """Refuses an argument that neither this job (with ``own``) nor any Beam options class knows, or a value
    a flag refuses, naming it and the nearest valid spelling; Beam alone would drop it and run on defaults."""
    parser = _known_flags_parser(own)
    _, unknown = parser.parse_known_args(list(argv))
    if not unknown:
        return
    flags = [s for a in parser._actions for s in a.option_strings] + (list(DEPRECATED_FLAGS) if own else [])
    first = next((a for a in unknown if a.startswith("-")), unknown[0])
    if not first.startswith("-"):
        raise OptionsError(f"unexpected argument {first!r}: every value follows its flag (see {command} --help)")
    name = first.split("=", 1)[0]
    close = [DEPRECATED_FLAGS.get(c, c) for c in difflib.get_close_matches(name, flags, n=1, cutoff=0.6)]
    hint = f"did you mean {close[0]}?" if close else f"see {command} --help"
    raise OptionsError(f"unknown option {name}: {hint}")
