"""Opening a yamnet-beam output where it is (local or any fsspec URL): DuckDB views over its committed
Parquet parts, its labels and run metadata, and streaming scans that view fixed-size-list columns as
``[rows, width]`` numpy arrays without per-row objects.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from yamnet_beam import framing
from yamnet_beam.job import schema
from yamnet_beam.job.schema import committed_frames
from yamnet_beam.model.labels import Labels, LabelsError, load_class_map
from yamnet_beam.uris import is_remote, user_uri

_LOG = logging.getLogger(__name__)
SCAN_BATCH_ROWS = 8192


class QueryError(ValueError):
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


@dataclass
class Output:
    """A yamnet-beam output directory (local or fsspec URL), with DuckDB views ``frames`` and ``files``."""

    uri: str
    fs: fsspec.AbstractFileSystem
    root: str  # path inside fs, no trailing slash
    frame_files: list[str]  # URIs of frames/*.parquet, sorted
    file_files: list[str]  # URIs of files/*.parquet, sorted
    manifest: dict[str, Any]

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

    @property
    def remote(self) -> bool:
        return is_remote(self.fs)

    @cached_property
    def labels(self) -> Labels:
        """Class names and MIDs from the output's own labels.csv (the run's labels, not today's)."""
        uri = self.child_uri("labels.csv")
        try:
            return load_class_map(uri)
        except LabelsError as e:
            raise QueryError(f"{self.uri} has no usable labels.csv ({e}); was the run interrupted?") from e

    @property
    def hop_samples(self) -> int:
        hop = self.manifest.get("hop_samples") or self.run_metadata.get("hop_samples")
        return int(hop or framing.HOP_SAMPLES)

    @property
    def hop_s(self) -> float:
        return self.hop_samples / framing.SAMPLE_RATE

    @cached_property
    def run_metadata(self) -> dict[str, Any]:
        """The run essentials stored in the tables' Parquet metadata."""
        first = (self.frame_files or self.file_files)[0]
        with self.fs.open(self.fs_path(first), "rb") as f:
            return schema.read_metadata(pq.read_schema(f))

    @cached_property
    def frame_schema(self) -> pa.Schema:
        """The frames table's schema (empty when no frames were written)."""
        if not self.frame_files:
            return pa.schema([])
        with self.fs.open(self.fs_path(self.frame_files[0]), "rb") as f:
            return pq.read_schema(f)

    @property
    def model_uri(self) -> str | None:
        return self.manifest.get("model_uri") or self.run_metadata.get("model_uri")

    def child_uri(self, name: str) -> str:
        return user_uri(self.fs, f"{self.root}/{name}")

    def fs_path(self, uri: str) -> str:
        return self.fs._strip_protocol(uri) if self.remote else uri

    def scan(
        self, columns: Sequence[str], path_glob: str | None = None, batch_rows: int = SCAN_BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of ``columns`` from frames/, file by file, optionally only paths matching a glob."""
        return scan_parquet(self.fs, self.frame_files, columns, path_glob, batch_rows)


def open_output(output: str) -> Output:
    """Opens an output directory written by ``yamnet-beam run``; raises :class:`QueryError` if it is not one."""
    fs, root = fsspec.core.url_to_fs(output)
    root = root.rstrip("/") or "/"
    if not fs.isdir(root):
        raise QueryError(f"{output} is not a directory: pass the --output directory of a yamnet-beam run.")

    def listing(sub: str) -> list[str]:
        return [user_uri(fs, p) for p in sorted(fs.glob(f"{root}/{sub}/*.parquet"))]

    file_files = listing("files")
    frame_files = listing("frames")
    if file_files:
        # A frames part is committed once its files part exists (see yamnet_beam.job.parts): skip leftovers
        # of an interrupted commit, which the next run removes anyway.
        frame_files = committed_frames(frame_files, file_files)
    if not frame_files and not file_files:
        raise QueryError(f"{output} has no frames/ or files/ tables: is it the --output of a yamnet-beam run?")
    manifest: dict[str, Any] = {}
    if fs.exists(f"{root}/manifest.json"):
        with fs.open(f"{root}/manifest.json", "r") as f:
            manifest = json.load(f)
    return Output(output, fs, root, frame_files, file_files, manifest)


def glob_regex(glob: str) -> str:
    """A shell glob as an anchored RE2 regex (``*`` also crosses ``/``, as in DuckDB's GLOB)."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = glob.find("]", i + 2)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : j]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "^" + "".join(out) + "$"


def scan_parquet(
    fs: fsspec.AbstractFileSystem,
    files: Sequence[str],
    columns: Sequence[str],
    path_glob: str | None = None,
    batch_rows: int = SCAN_BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Streams non-empty record batches of ``columns`` from Parquet files, optionally only paths matching a glob."""
    regex = glob_regex(path_glob) if path_glob else None
    read_cols = list(dict.fromkeys([*columns, *(["path"] if regex else [])]))
    for uri in files:
        with fs.open(uri if "://" not in uri else fs._strip_protocol(uri), "rb") as f:
            for batch in schema.parquet_file(f).iter_batches(batch_size=batch_rows, columns=read_cols):
                if regex:
                    batch = batch.filter(pc.match_substring_regex(batch.column("path"), regex)).select(list(columns))
                if batch.num_rows:
                    yield batch


def list_matrix(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A (fixed-size) list column as a ``[rows, width]`` numpy array, zero-copy when it is one contiguous chunk.

    Lists read back through DuckDB are variable-size: their width is then that of the (equal) rows.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if arr.null_count:
        raise QueryError("a list column holds nulls; the frames table never should: is the file damaged?")
    values = arr.flatten()
    if pa.types.is_fixed_size_list(arr.type):
        width = arr.type.list_size
    else:
        width = len(values) // len(arr) if len(arr) else 0
    return values.to_numpy(zero_copy_only=False).reshape(len(arr), width)
