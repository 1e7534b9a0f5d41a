"""``yamnet-beam explore``: the local web app over an output (:mod:`yamnet_beam.explore`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from yamnet_beam.cli.grammar import Parser, UsageError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parsers(sub, parsers: dict[str, Parser]) -> None:
    ex = sub.add_parser("explore", help="a local web app: search, listen, label, train and re-rank")
    ex.add_argument("output", help="the --output directory of a run (local)")
    ex.add_argument("--head", help="a head directory (yamnet-beam train): search its classes too")
    ex.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    ex.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    ex.add_argument("--model", help="model for examples not in the output (default: the run's, manifest.json)")
    ex.set_defaults(handler=_cmd_explore)
    parsers["explore"] = ex


def _cmd_explore(args: argparse.Namespace, rest: Sequence[str]) -> int:
    try:
        from yamnet_beam.explore.app import ExploreApp, serve
    except ImportError as e:
        raise UsageError(f'explore needs Werkzeug: pip install "yamnet-beam[explore]" ({e.name} is missing)') from e
    from yamnet_beam.explore.session import Explorer

    if not 0 <= args.port < 65536:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    if args.host not in LOOPBACK:
        print(
            f"yamnet-beam: warning: listening on {args.host}: anyone who can reach it and has the URL's token can "
            "read this output's audio and labels",
            file=sys.stderr,
        )
    app = ExploreApp(Explorer(args.output, args.head, args.model), bound=args.host)

    def ready(url: str) -> None:
        print(f"Explorer for {args.output}: {url}", flush=True)
        print("Ctrl-C stops it.", flush=True)

    try:
        serve(app, args.host, args.port, ready)  # returns on Ctrl-C (the server takes it)
    finally:
        app.ex.close()  # background loading and training end before the interpreter does
    raise KeyboardInterrupt(f"explorer stopped; labels are in {app.ex.store.dir}")
