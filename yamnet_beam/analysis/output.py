"""Opening a yamnet-beam output for questions: DuckDB views ``frames`` and ``files`` over its committed parts.

The output itself (listing, run values, labels, scans) is :class:`yamnet_beam.table.output.OutputDir`;
:class:`Output` only adds the DuckDB connection, so reading results needs no Beam.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import pyarrow as pa

from yamnet_beam import framing
from yamnet_beam.errors import UserError
from yamnet_beam.table.layout import FILES_DIR, FRAMES_DIR
from yamnet_beam.table.output import OutputDir


class QueryError(UserError, ValueError):
    """The output or the question cannot be answered as asked; the message says what to do."""


def duckdb_module():
    try:
        import duckdb
    except ImportError as e:
        raise QueryError('querying needs DuckDB: pip install "yamnet-beam[query]"') from e
    return duckdb


def sql_table(con: Any, sql: str, params: Any = None) -> pa.Table:
    """A query's result as a pyarrow Table (``fetch_arrow_table`` in DuckDB 1.x, ``to_arrow_table`` in 2.x)."""
    rel = con.sql(sql, params=params)
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch()


def first_row(con: Any, sql: str, params: Any = None) -> tuple | None:
    """A query's first row, or None. Reads the whole result: DuckDB 2.x refuses further work on a
    connection (``con.sql`` in :func:`_arrow`) while a previous result is still partly unread."""
    rows = con.execute(sql, params).fetchall()
    return rows[0] if rows else None


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


class Output(OutputDir):
    """An output directory opened for questions: :class:`OutputDir` with DuckDB views ``frames`` and ``files``."""

    @cached_property
    def con(self):
        """A private DuckDB connection whose views read the Parquet files where they are."""
        duckdb = duckdb_module()
        con = duckdb.connect()
        if self.remote:
            con.register_filesystem(self.fs)
        if self.frame_files:
            files = ", ".join(sql_str(f) for f in self.frame_files)
            con.execute(f"CREATE VIEW frames AS SELECT * FROM read_parquet([{files}])")
        else:  # every file failed: an empty frames table keeps summary and report working
            con.execute(
                "CREATE VIEW frames AS SELECT NULL::VARCHAR AS path, NULL::INTEGER AS frame, NULL::DOUBLE AS start_s,"
                " NULL::DOUBLE AS end_s, NULL::INTEGER AS valid_samples, NULL::FLOAT[] AS scores,"
                " NULL::FLOAT[] AS embedding, NULL::VARCHAR AS top_label, NULL::FLOAT AS top_score WHERE false"
            )
        if self.file_files:
            files = ", ".join(sql_str(f) for f in self.file_files)
            con.execute(f"CREATE VIEW files AS SELECT * FROM read_parquet([{files}])")
        else:  # an output written by hand or partly copied: keep queries working with no status info
            con.execute(
                "CREATE VIEW files AS SELECT path, 'ok' AS status, NULL::VARCHAR AS error_kind, NULL::VARCHAR AS error,"
                f" max(start_s + valid_samples / {float(framing.SAMPLE_RATE)}) AS duration_s, count(*) AS frames"
                " FROM frames GROUP BY path"
            )
        return con


def open_output(output: str) -> Output:
    """Opens an output directory written by ``yamnet-beam run``; raises :class:`QueryError` if it is not one."""
    out = Output(output)
    if not out.fs.isdir(out.root):
        raise QueryError(f"{output} is not a directory: pass the --output directory of a yamnet-beam run.")
    if not out.frame_files and not out.file_files:
        raise QueryError(
            f"{output} has no {FRAMES_DIR}/ or {FILES_DIR}/ tables: is it the --output of a yamnet-beam run?"
        )
    return out
