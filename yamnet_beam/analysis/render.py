"""Printing result tables for people and programs: an aligned text table, CSV, JSON or Parquet."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from yamnet_beam.analysis.output import QueryError

FORMATS = ("table", "csv", "json", "parquet")


def is_number(t: pa.DataType) -> bool:
    """Whether a column of type ``t`` is right-aligned."""
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def cell(v: Any, t: pa.DataType) -> str:
    """A value of a column of type ``t``: scores (float32/16) to 3 decimals; seconds, hours and counts
    (float64) to 6 significant digits."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}" if t in (pa.float32(), pa.float16()) else f"{v:.6g}"
    return str(v)


def format_text(table: pa.Table) -> str:
    """A plain aligned text table (numbers right-aligned), for people."""
    names = table.column_names
    types = table.schema.types
    numeric = [is_number(t) for t in types]
    rows = [[cell(v, t) for v, t in zip(r.values(), types, strict=True)] for r in table.to_pylist()]
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True))

    out = [line(names).rstrip(), "  ".join("-" * w for w in widths)]
    out += [line(r).rstrip() for r in rows]
    out.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(out) + "\n"


def _whole(v):
    """A whole float as an int (summary's counts share a DOUBLE column with its hours: 20, not 20.0)."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def render(table: pa.Table, fmt: str = "table", dest: str | None = None, stream: IO[str] | None = None) -> None:
    """Writes ``table`` as a terminal table, CSV, JSON (an array of objects) or Parquet (to ``dest``)."""
    stream = stream or sys.stdout
    if fmt not in FORMATS:
        raise QueryError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet":
        if not dest:
            raise QueryError("--format parquet writes a file: pass -o FILE.parquet")
        pq.write_table(table, dest, compression="zstd")
        return
    if fmt == "table":
        text = format_text(table)
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(table.column_names)
        writer.writerows([[("" if v is None else v) for v in r.values()] for r in table.to_pylist()])
        text = buf.getvalue()
    else:
        rows = [{k: _whole(v) for k, v in r.items()} for r in table.to_pylist()]
        text = json.dumps(rows, indent=1, default=str) + "\n"
    if dest:
        with open(dest, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        stream.write(text)
