"""Raven Pro selection tables from events: tab-separated, one header line, the columns Raven writes
(Selection, View, Channel, Begin Time (s), End Time (s), Low Freq (Hz), High Freq (Hz)) plus Class and Score.

One table per audio file (``<file stem>.Table.1.selections.txt``, opened beside that file) or one for all,
with ``Begin Path``, ``Begin File`` and ``File Offset (s)`` (times are within each file) to find each file.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from yamnet_beam import framing

VIEW = "Spectrogram 1"
LOW_HZ = 0.0
HIGH_HZ = framing.SAMPLE_RATE / 2  # the model hears up to 8 kHz
COLUMNS = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)")
FILE_COLUMNS = ("Begin Path", "Begin File", "File Offset (s)")
EXTRA = ("Class", "Score")
SUFFIX = ".Table.1.selections.txt"


def _clean(v: str) -> str:
    """Tabs and line breaks would break the table: spaces instead."""
    return re.sub(r"[\t\r\n]", " ", v)


def raven_text(events: pa.Table, with_files: bool = True) -> str:
    """A selection table of ``query events`` rows (path, class, start_s, end_s, peak_score ...)."""
    header = list(COLUMNS) + (list(FILE_COLUMNS) if with_files else []) + list(EXTRA)
    lines = ["\t".join(header)]
    for i, r in enumerate(events.to_pylist(), start=1):
        cells = [str(i), VIEW, "1", f"{r['start_s']:.6f}", f"{r['end_s']:.6f}", f"{LOW_HZ:.1f}", f"{HIGH_HZ:.1f}"]
        if with_files:
            cells += [_clean(r["path"]), _clean(posixpath.basename(r["path"])), f"{r['start_s']:.6f}"]
        cells += [_clean(str(r["class"])), f"{r.get('peak_score', r.get('score', 0.0)):.6f}"]
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


def table_name(path: str) -> str:
    """``dir/dog bark.flac`` -> ``dog bark.Table.1.selections.txt`` (Raven's own naming)."""
    stem = posixpath.basename(path.rstrip("/")).rsplit(".", 1)[0] or "audio"
    return _clean(stem).replace("/", "_") + SUFFIX


def write_raven(events: pa.Table, dest: str, per_file: bool = False) -> list[str]:
    """One table at ``dest``, or with ``per_file`` one per audio file in the directory ``dest``; returns the files.

    Per-file names that collide (the same name in two folders) get ``-2``, ``-3`` ... before the suffix."""
    if not per_file:
        with open(dest, "w", encoding="utf-8", newline="") as f:
            f.write(raven_text(events))
        return [dest]
    os.makedirs(dest, exist_ok=True)
    written: list[str] = []
    for path in _paths(events.column("path").to_pylist()):
        rows = events.filter(pc.equal(events.column("path"), path))
        name = table_name(path)
        n = 1
        while os.path.join(dest, name) in written:
            n += 1
            name = table_name(path).replace(SUFFIX, f"-{n}{SUFFIX}")
        target = os.path.join(dest, name)
        with open(target, "w", encoding="utf-8", newline="") as f:
            f.write(raven_text(rows, with_files=False))
        written.append(target)
    return written


def _paths(paths: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(paths))
