"""Earlier spellings of command-line flags, still accepted: rewritten to the current ones, each named once on
stderr. At the bottom (imports nothing of ours), so the job's options and the command line share it."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence


def rewrite_deprecated(argv: Sequence[str], aliases: Mapping[str, str], stream=None) -> list[str]:
    """``argv`` with each deprecated flag (``--old`` or ``--old=value``) spelled the new way, saying so once.

    An alias whose new spelling has a space (``--force`` -> ``--mode overwrite``) replaces a flag without value.
    """
    out, told = [], set()
    for i, a in enumerate(argv):
        if a == "--":
            return out + list(argv[i:])
        name, eq, value = a.partition("=")
        new = aliases.get(name)
        if new is None:
            out.append(a)
            continue
        if name not in told:
            told.add(name)
            print(f"yamnet-beam: {name} is deprecated; use {new}", file=stream or sys.stderr)
        out += new.split() if " " in new else [f"{new}{eq}{value}"]
    return out
