"""The commands about your own classes on YAMNet's embeddings (:mod:`yamnet_beam.customize`): ``train``,
``apply`` and ``export``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from yamnet_beam.cli.grammar import Parser, UsageError, add_mode, refuse_existing

HEAD_HELP = "head directory written by `yamnet-beam train`"


def add_parsers(sub, parsers: dict[str, Parser]) -> None:
    train = sub.add_parser("train", help="train a head (your classes) on an output's embeddings, cross-validated")
    train.add_argument("output", help="the --output directory of a run over the labelled files")
    train.add_argument(
        "--labels",
        required=True,
        help="CSV path,label[,fold] (repeat a path for several labels), window labels "
        "path,start_s,end_s,label[,fold], or an explorer labels directory (OUTPUT/labels)",
    )
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
    add_mode(train, "the head directory")
    train.set_defaults(handler=_cmd_train)
    apply = sub.add_parser(
        "apply",
        help="score a finished output's stored embeddings with a head (a Beam job: any Beam option, e.g. --runner)",
        description="Writes OUTPUT/heads/<head name>/ as a Beam job: any other flag must be an Apache Beam "
        "pipeline option (e.g. --runner, --direct_num_workers); an unknown one is refused (exit 2).",
    )
    apply.add_argument("output", help="the --output directory of a run")
    apply.add_argument("--head", required=True, help=HEAD_HELP)
    add_mode(apply, "OUTPUT/heads/<head name>/")
    apply.set_defaults(handler=_cmd_apply, beam=True)
    export = sub.add_parser("export", help="YAMNet + a head as one .tflite with metadata for MediaPipe")
    export.add_argument("head_dir", nargs="?", help=argparse.SUPPRESS)  # deprecated: the head was positional
    export.add_argument("--head", help=HEAD_HELP)
    export.add_argument("-o", "--out", dest="dest", required=True, help=".tflite file to write")
    export.add_argument("--custom_only", action="store_true", help="only the custom scores as output")
    export.add_argument(
        "--model", help="the YAMNet .tflite the head was trained on (default: the one its training run used)"
    )
    export.add_argument("--class_map", help="YAMNet class map CSV (default: beside the model)")
    add_mode(export, "the -o file")
    export.set_defaults(handler=_cmd_export)
    parsers.update(train=train, apply=apply, export=export)


def _cmd_train(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from yamnet_beam.customize.metrics import CONFUSION_PNG, METRICS_JSON, format_metrics
    from yamnet_beam.customize.train import train

    refuse_existing(args.dest, args.mode)
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
    print(f"Wrote {args.dest} (head.json, weights.npz, {METRICS_JSON}, {CONFUSION_PNG})")
    return 0


def _cmd_apply(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from yamnet_beam.cli import beam_module

    apply = beam_module("yamnet_beam.job.apply")
    print(f"Wrote {apply.apply_head(args.output, args.head, rest, mode=args.mode)}")
    return 0


def _cmd_export(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from yamnet_beam.customize.export import export_head

    if args.head_dir:
        if args.head:
            raise UsageError(f"two heads: {args.head_dir} and --head {args.head}; pass only --head")
        print("yamnet-beam: the head as a positional argument is deprecated; use --head DIR", file=sys.stderr)
        args.head = args.head_dir
    if not args.head:
        raise UsageError("the following arguments are required: --head (see yamnet-beam export --help)")
    refuse_existing(args.dest, args.mode)
    print(f"Wrote {export_head(args.head, args.dest, args.model, args.class_map, args.custom_only)}")
    return 0
