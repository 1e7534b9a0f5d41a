"""Query a yamnet-beam output in place: top classes, events, similar sounds, run summary, clip table.

No Beam and no copy of the data: SQL questions (events, summary, frame look-ups) go to DuckDB over
the Parquet files; numeric scans (pooling per file, cosine similarity) stream Arrow record batches
and view each fixed-size-list column as a ``[rows, width]`` numpy array without per-row objects, so
memory stays bounded by one batch plus one accumulator per file in flight.

Every function returns a ``pyarrow.Table`` (small results) that :func:`render` prints as a terminal
table, CSV, JSON or Parquet.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import logging
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import IO, Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from yamnet_beam import framing, schema
from yamnet_beam.inputs import is_remote, mtime_of, user_uri
from yamnet_beam.labels import Labels, LabelsError, load_class_map
from yamnet_beam.parts import committed_frames

_LOG = logging.getLogger(__name__)
FORMATS = ("table", "csv", "json", "parquet")
SCAN_BATCH_ROWS = 8192


class QueryError(ValueError):
    """The output or the question cannot be answered as asked; the message says what to do."""


def _duckdb():
    try:
        import duckdb
    except ImportError as e:
        raise QueryError('querying needs DuckDB: pip install "yamnet-beam[query]"') from e
    return duckdb


def _arrow(con: Any, sql: str, params: Any = None) -> pa.Table:
    """A query's result as a pyarrow Table (``fetch_arrow_table`` in DuckDB 1.x, ``to_arrow_table`` in 2.x)."""
    rel = con.sql(sql, params=params)
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch()


def _first_row(con: Any, sql: str, params: Any = None) -> tuple | None:
    """A query's first row, or None. Reads the whole result: DuckDB 2.x refuses further work on a
    connection (``con.sql`` in :func:`_arrow`) while a previous result is still partly unread."""
    rows = con.execute(sql, params).fetchall()
    return rows[0] if rows else None


def _sql_str(s: str) -> str:
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
        duckdb = _duckdb()
        con = duckdb.connect()
        if self._remote:
            con.register_filesystem(self.fs)
        if self.frame_files:
            files = ", ".join(_sql_str(f) for f in self.frame_files)
            con.execute(f"CREATE VIEW frames AS SELECT * FROM read_parquet([{files}])")
        else:  # every file failed: an empty frames table keeps summary and report working
            con.execute(
                "CREATE VIEW frames AS SELECT NULL::VARCHAR AS path, NULL::INTEGER AS frame, NULL::DOUBLE AS start_s,"
                " NULL::DOUBLE AS end_s, NULL::INTEGER AS valid_samples, NULL::FLOAT[] AS scores,"
                " NULL::FLOAT[] AS embedding, NULL::VARCHAR AS top_label, NULL::FLOAT AS top_score WHERE false"
            )
        if self.file_files:
            files = ", ".join(_sql_str(f) for f in self.file_files)
            con.execute(f"CREATE VIEW files AS SELECT * FROM read_parquet([{files}])")
        else:  # an output written by hand or partly copied: keep queries working with no status info
            con.execute(
                "CREATE VIEW files AS SELECT path, 'ok' AS status, NULL::VARCHAR AS error_kind, NULL::VARCHAR AS error,"
                f" max(start_s + valid_samples / {float(framing.SAMPLE_RATE)}) AS duration_s, count(*) AS frames"
                " FROM frames GROUP BY path"
            )
        return con

    @property
    def _remote(self) -> bool:
        return is_remote(self.fs)

    @cached_property
    def labels(self) -> Labels:
        """Class names and MIDs from the output's own labels.csv (the run's labels, not today's)."""
        uri = self._uri("labels.csv")
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
        with self.fs.open(self._strip(first), "rb") as f:
            return schema.read_metadata(pq.read_schema(f))

    @property
    def model_uri(self) -> str | None:
        return self.manifest.get("model_uri") or self.run_metadata.get("model_uri")

    def _uri(self, name: str) -> str:
        return user_uri(self.fs, f"{self.root}/{name}")

    def _strip(self, uri: str) -> str:
        return self.fs._strip_protocol(uri) if self._remote else uri

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
        # A frames part is committed once its files part exists (see yamnet_beam.parts): skip leftovers
        # of an interrupted commit, which the next run removes anyway.
        frame_files = committed_frames(frame_files, file_files)
    if not frame_files and not file_files:
        raise QueryError(f"{output} has no frames/ or files/ tables: is it the --output of a yamnet-beam run?")
    manifest: dict[str, Any] = {}
    if fs.exists(f"{root}/manifest.json"):
        with fs.open(f"{root}/manifest.json", "r") as f:
            manifest = json.load(f)
    return Output(output, fs, root, frame_files, file_files, manifest)


# --------------------------------------------------------------------------------------------
# Scanning and arrays


def _glob_regex(glob: str) -> str:
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
    regex = _glob_regex(path_glob) if path_glob else None
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


# --------------------------------------------------------------------------------------------
# Class names


def resolve_class(labels: Labels, spec: str) -> int:
    """A class index from a display name (any case), an AudioSet MID (``/m/09x0r``) or an index."""
    s = spec.strip()
    if s.isdigit() and int(s) < len(labels):
        return int(s)
    if s in labels.mids:
        return labels.mids.index(s)
    lower = [n.lower() for n in labels.names]
    if s.lower() in lower:
        return lower.index(s.lower())
    close = difflib.get_close_matches(s.lower(), lower, n=5, cutoff=0.5)
    contains = [n for n in labels.names if s.lower() in n.lower()][:5]
    hints = list(dict.fromkeys([labels.names[lower.index(c)] for c in close] + contains))
    hint = f"; did you mean {', '.join(repr(h) for h in hints)}?" if hints else " (see labels.csv in the output)"
    raise QueryError(f"unknown class {spec!r}: give a display name, a MID such as /m/09x0r, or an index{hint}")


# --------------------------------------------------------------------------------------------
# Pooling per file (clip table, top classes)


class _Acc:
    __slots__ = ("n", "score_sum", "score_max", "emb_sum")

    def __init__(self, num_classes: int, dim: int | None):
        self.n = 0
        self.score_sum = np.zeros(num_classes, np.float64)
        self.score_max = np.full(num_classes, -np.inf, np.float32)
        self.emb_sum = np.zeros(dim, np.float64) if dim else None


def _expected_frames(out: Output) -> dict[str, tuple[int, str | None, float | None]]:
    rows = out.con.execute("SELECT path, frames, status, duration_s FROM files").fetchall()
    return {p: (int(n or 0), s, d) for p, n, s, d in rows}


def iter_pooled(
    out: Output,
    path_glob: str | None = None,
    with_embedding: bool = True,
    chunk_files: int = 256,
    batch_rows: int = SCAN_BATCH_ROWS,
) -> Iterator[pa.Table]:
    """Per-file mean/max scores (and mean embedding) as tables of ``chunk_files`` rows (clips schema).

    Streams frames once. A file's row is emitted as soon as all the frames files/ promised for it
    have been seen, so memory holds only files in flight (frames of one file are written together).
    """
    labels = out.labels
    num_classes = len(labels)
    dim = schema.EMBEDDING_DIM if with_embedding else None
    expected = _expected_frames(out)
    accs: dict[str, _Acc] = {}
    done: list[tuple[str, _Acc]] = []
    cols = ["path", "scores", *(["embedding"] if with_embedding else [])]
    for batch in out.scan(cols, path_glob, batch_rows):
        codes = pc.dictionary_encode(batch.column("path"))
        idx = codes.indices.to_numpy()
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
        counts = np.diff(np.r_[starts, len(order)])
        scores = list_matrix(batch.column("scores"))[order]
        s_sum = np.add.reduceat(scores, starts, axis=0, dtype=np.float64)
        s_max = np.maximum.reduceat(scores, starts, axis=0)
        e_sum = None
        if with_embedding:
            emb = list_matrix(batch.column("embedding"))[order]
            e_sum = np.add.reduceat(emb, starts, axis=0, dtype=np.float64)
        names = codes.dictionary.to_pylist()
        for g, code in enumerate(sorted_idx[starts]):
            path = names[code]
            acc = accs.get(path)
            if acc is None:
                acc = accs[path] = _Acc(num_classes, dim)
            acc.n += int(counts[g])
            acc.score_sum += s_sum[g]
            np.maximum(acc.score_max, s_max[g], out=acc.score_max)
            if e_sum is not None:
                acc.emb_sum += e_sum[g]
            if acc.n >= expected.get(path, (math.inf,))[0]:
                done.append((path, accs.pop(path)))
        if len(done) >= chunk_files:
            yield _pooled_table(done, expected, labels, with_embedding)
            done = []
    done.extend(sorted(accs.items()))  # files whose frame count files/ does not know (e.g. a partial copy)
    for i in range(0, len(done), chunk_files):
        yield _pooled_table(done[i : i + chunk_files], expected, labels, with_embedding)


def _pooled_table(
    done: list[tuple[str, _Acc]], expected: dict[str, tuple[int, str | None, float | None]], labels: Labels, emb: bool
) -> pa.Table:
    n = np.array([a.n for _, a in done], np.int64)  # iter_pooled never passes an empty chunk
    mean = np.stack([a.score_sum for _, a in done]) / n[:, None]
    mx = np.stack([a.score_max for _, a in done])
    top = mean.argmax(axis=1)
    names = np.asarray(labels.names, dtype=object)
    paths = [p for p, _ in done]
    info = [expected.get(p, (None, None, None)) for p in paths]
    columns: dict[str, Any] = {
        "path": pa.array(paths, pa.string()),
        "status": pa.array([i[1] for i in info], pa.string()),
        "frames": pa.array(n),
        "duration_s": pa.array([i[2] for i in info], pa.float64()),
        "mean_scores": pa.FixedSizeListArray.from_arrays(pa.array(mean.astype(np.float32).reshape(-1)), len(labels)),
        "max_scores": pa.FixedSizeListArray.from_arrays(pa.array(mx.astype(np.float32).reshape(-1)), len(labels)),
    }
    if emb:
        e = np.stack([a.emb_sum for _, a in done]) / n[:, None]
        columns["mean_embedding"] = pa.FixedSizeListArray.from_arrays(
            pa.array(e.astype(np.float32).reshape(-1)), schema.EMBEDDING_DIM
        )
    columns["top_label"] = pa.array(names[top], pa.string())
    columns["top_score"] = pa.array(mean[np.arange(len(done)), top].astype(np.float32))
    full = schema.clips_schema(num_classes=len(labels))
    fields = [full.field(c) for c in columns]
    return pa.Table.from_pydict(columns, schema=pa.schema(fields))


def pool(out: Output, dest: str | None = None, path_glob: str | None = None) -> str:
    """Writes the clip table (one row per file, :func:`yamnet_beam.schema.clips_schema`); returns its URI.

    ``dest`` is a directory (default ``OUTPUT/clips``); its previous Parquet files are replaced, since
    the clip table is derived data that a new pooling makes anew.
    """
    fs, root = fsspec.core.url_to_fs(dest or out._uri("clips"))
    root = root.rstrip("/")
    fs.makedirs(root, exist_ok=True)
    for old in fs.glob(f"{root}/*.parquet"):
        fs.rm(old)
    path = f"{root}/part-00000-of-00001.parquet"
    clip_schema = schema.clips_schema(num_classes=len(out.labels), metadata=out.run_metadata or None)
    with fs.open(path, "wb") as f, pq.ParquetWriter(f, clip_schema, compression="zstd") as writer:
        for table in iter_pooled(out, path_glob):  # clips_schema's fields already; the writer adds the metadata
            writer.write_table(table)
    return user_uri(fs, path)


def top_classes(out: Output, k: int = 5, path_glob: str | None = None) -> pa.Table:
    """Per file, the ``k`` classes with the highest mean score and the ``k`` with the highest max score."""
    if k < 1:
        raise QueryError(f"-k must be at least 1, got {k}")
    names = np.asarray(out.labels.names, dtype=object)
    k = min(k, len(names))
    ranks = np.arange(1, k + 1, dtype=np.int32)
    tables = []
    for t in iter_pooled(out, path_glob, with_embedding=False):
        columns: dict[str, Any] = {"path": t.column("path").take(np.repeat(np.arange(t.num_rows), k))}
        columns["rank"] = np.tile(ranks, t.num_rows)
        for by, value, pooled in (("by_mean", "mean", "mean_scores"), ("by_max", "max", "max_scores")):
            m = list_matrix(t.column(pooled))  # float32 [files, classes]
            top = np.argsort(-m, axis=1, kind="stable")[:, :k]
            columns[by] = pa.array(names[top].reshape(-1), pa.string())
            columns[value] = np.take_along_axis(m, top, axis=1).reshape(-1)
        tables.append(pa.table(columns))
    if not tables:
        raise QueryError(f"no frames match --path {path_glob!r}" if path_glob else "the output holds no frames")
    return pa.concat_tables(tables).sort_by([("path", "ascending"), ("rank", "ascending")])


# --------------------------------------------------------------------------------------------
# Events


def events(
    out: Output,
    cls: str,
    threshold: float,
    min_duration: float = 0.0,
    path_glob: str | None = None,
    path: str | None = None,
    max_gap: float = 0.0,
) -> pa.Table:
    """Time ranges where one class's score is at least ``threshold``; runs of consecutive frames merge.

    ``max_gap`` (seconds) also bridges dips: runs separated by at most that much time below the
    threshold (whole hops) become one event, e.g. the pauses between words of one utterance.

    Each frame stands for the hop-long slice around its window's centre, so consecutive frames tile
    the timeline: an event runs from its first frame's centre minus half a hop to its last frame's
    centre plus half a hop (clipped to the audio). This puts edges within a hop of the sound's, where
    window edges (0.975 s wide) would overstate events by up to a window. ``path_glob`` filters
    paths by a shell glob, ``path`` selects one path exactly.
    """
    if not 0.0 <= threshold <= 1.0:
        raise QueryError(f"--threshold is a score in [0, 1], got {threshold}")
    if min_duration < 0:
        raise QueryError(f"--min_duration must be >= 0, got {min_duration}")
    if max_gap < 0:
        raise QueryError(f"--max_gap must be >= 0, got {max_gap}")
    gap_frames = int(math.floor(max_gap / out.hop_s + 1e-9))
    index = resolve_class(out.labels, cls)
    half_window = framing.WINDOW_SECONDS / 2
    sql = f"""
        WITH hits AS (
            SELECT path, frame, start_s + {half_window} AS centre,
                   start_s + valid_samples / {float(framing.SAMPLE_RATE)} AS audio_end, scores[{index + 1}] AS score
            FROM frames
            WHERE scores[{index + 1}] >= $threshold {"AND path GLOB $glob" if path_glob else ""}
                  {"AND path = $path" if path is not None else ""}
        ), steps AS (  -- gaps and islands: a new island starts after more than $gap missing frames
            SELECT *, CASE WHEN frame - lag(frame) OVER (PARTITION BY path ORDER BY frame) <= 1 + $gap
                           THEN 0 ELSE 1 END AS new_island
            FROM hits
        ), islands AS (
            SELECT *, sum(new_island) OVER (PARTITION BY path ORDER BY frame ROWS UNBOUNDED PRECEDING) AS island
            FROM steps
        ), ev AS (
            SELECT path, min(frame) AS first_frame, max(frame) AS last_frame,
                   greatest(0.0, min(centre) - $half_hop) AS start_s,
                   least(max(centre) + $half_hop, max(audio_end)) AS end_s,
                   max(score) AS peak_score, arg_max(centre, score) AS peak_s
            FROM islands GROUP BY path, island
        )
        SELECT path, $label AS class, start_s, end_s, end_s - start_s AS duration_s, peak_score, peak_s,
               (last_frame - first_frame + 1)::INTEGER AS frames, first_frame::INTEGER AS first_frame
        FROM ev WHERE end_s - start_s >= $min_duration ORDER BY path, start_s
    """
    params: dict[str, Any] = {
        "threshold": threshold,
        "half_hop": out.hop_s / 2,
        "label": out.labels.names[index],
        "min_duration": min_duration,
        "gap": gap_frames,
    }
    if path_glob:
        params["glob"] = path_glob
    if path is not None:
        params["path"] = path
    return _arrow(out.con, sql, params)


# --------------------------------------------------------------------------------------------
# Similarity search


@dataclass(frozen=True)
class QueryVector:
    """An embedding to search with, and where it came from (for the report line)."""

    vector: np.ndarray  # float32 [1024]
    source: str


def frame_at(seconds: float, n_frames: int, hop_samples: int) -> int:
    """The frame whose window centre is nearest to ``seconds`` (clamped to the file's frames)."""
    centre0 = framing.WINDOW_SAMPLES / 2
    i = round((seconds * framing.SAMPLE_RATE - centre0) / hop_samples)
    return int(min(max(i, 0), max(n_frames - 1, 0)))


def _stored_path(out: Output, file: str) -> tuple[str, int] | None:
    """``file`` as the output stores it (as given, or made absolute) and its frame count; None if it has no frames."""
    candidates = list(dict.fromkeys([file, os.path.abspath(os.path.expanduser(file))]))
    for c in candidates:
        row = _first_row(out.con, "SELECT frames FROM files WHERE path = ? AND frames > 0 LIMIT 1", [c])
        if row:
            return c, int(row[0])
    return None


def frame_vector(out: Output, path: str, index: int) -> QueryVector:
    """The stored embedding of frame ``index`` of ``path``."""
    row = _first_row(out.con, "SELECT embedding FROM frames WHERE path = ? AND frame = ? LIMIT 1", [path, int(index)])
    if row is None:
        n = _first_row(out.con, "SELECT count(*) FROM frames WHERE path = ?", [path])[0]
        if n == 0:
            raise QueryError(f"{path!r} has no frames in {out.uri} (paths are stored as the run matched them)")
        raise QueryError(f"{path!r} has frames 0..{n - 1}; there is no frame {index}")
    return QueryVector(np.asarray(row[0], np.float32), f"{path} frame {index}")


def parse_frame_ref(ref: str) -> tuple[str, int]:
    """``PATH:INDEX`` (the path may itself hold colons, as URLs do)."""
    path, sep, idx = ref.rpartition(":")
    if not sep or not path or not idx.strip().lstrip("-").isdigit():
        raise QueryError(f"--frame takes PATH:INDEX (e.g. audio/a.wav:12), got {ref!r}")
    return path, int(idx)


def parse_file_ref(ref: str) -> tuple[str, float | None]:
    """``FILE`` or ``FILE:SECONDS``; a file whose own name ends in ``:<number>`` wins if it exists."""
    if os.path.exists(ref):
        return ref, None
    path, sep, sec = ref.rpartition(":")
    if sep and path:
        try:
            seconds = float(sec)
        except ValueError:
            return ref, None
        if seconds < 0 or not math.isfinite(seconds):
            raise QueryError(f"--to {ref}: the time must be a number of seconds >= 0")
        return path, seconds
    return ref, None


def file_vector(out: Output, file: str, seconds: float | None = None, model_uri: str | None = None) -> QueryVector:
    """The embedding of ``file`` at ``seconds`` (its frame nearest in time) or, without seconds, its mean.

    A file in the output uses its stored frames; any other is decoded and embedded now with the
    run's model (``model_uri`` overrides), framed exactly as the pipeline frames.
    """
    stored = _stored_path(out, file)
    if stored is None:
        return _embed_file(out, file, seconds, model_uri)
    path, n = stored
    if seconds is not None:
        return frame_vector(out, path, frame_at(seconds, n, out.hop_samples))
    t = _arrow(out.con, "SELECT embedding FROM frames WHERE path = ?", [path])
    mean = list_matrix(t.column("embedding")).mean(axis=0, dtype=np.float64)
    return QueryVector(mean.astype(np.float32), f"{path} (mean of its {t.num_rows} frames)")


def _embed_file(out: Output, file: str, seconds: float | None, model_uri: str | None) -> QueryVector:
    from yamnet_beam.audio import AudioDecodeError, decode_file
    from yamnet_beam.model import YamnetModel

    uri = model_uri or out.model_uri
    if not uri:
        from yamnet_beam.download import default_model_uri

        uri = default_model_uri()
    try:
        signal, _, _ = decode_file(file)
    except AudioDecodeError as e:
        raise QueryError(f"--to {file}: not in the output, and it cannot be decoded to embed it: {e}") from e
    frames = framing.frame_signal(signal, out.hop_samples)
    if seconds is not None:
        i = frame_at(seconds, len(frames), out.hop_samples)
        frames, what = frames[i : i + 1], f"{file} frame {i} (embedded now)"
    else:
        what = f"{file} (mean of {len(frames)} frames, embedded now)"
    _, emb = YamnetModel.from_uri(uri).predict(frames)
    return QueryVector(emb.mean(axis=0, dtype=np.float64).astype(np.float32), what)


def _row_norms(m: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->i", m, m))


def _cosine(block: np.ndarray, q_unit: np.ndarray, normalized: bool = False) -> np.ndarray:
    m = block.astype(np.float32, copy=False)
    if normalized:  # rows already have unit length (the similarity cache): one matrix-vector product
        return m @ q_unit
    norms = _row_norms(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        sims = (m @ q_unit) / norms
    return np.nan_to_num(sims, nan=-1.0)


def nearest_frames(
    batches: Iterable[pa.RecordBatch], query: np.ndarray, k: int = 10, per_file: bool = False, normalized: bool = False
) -> pa.Table | None:
    """Top-``k`` rows by cosine similarity of their ``embedding`` to ``query``, brute force in one pass.

    Each batch costs one matrix-vector product over a zero-copy view of its embedding column; only
    the best ``k`` rows (``per_file``: the best row of each file) survive between batches. All other
    columns of the batches are kept in the result, followed by ``similarity``; None if no batches.
    """
    q = np.asarray(query, np.float32).reshape(-1)
    norm = float(np.linalg.norm(q))
    if not norm or not math.isfinite(norm):
        raise QueryError("the query embedding is all zeros or not finite; pick another frame")
    q_unit = q / norm
    keep: list[pa.Table] = []
    for batch in batches:
        sims = _cosine(list_matrix(batch.column("embedding")), q_unit, normalized)
        t = pa.Table.from_batches([batch.drop_columns(["embedding"])]).append_column(
            "similarity", pa.array(sims, pa.float32())
        )
        t = _best_per_path(t) if per_file else t
        if t.num_rows > k:
            idx = np.argpartition(-t.column("similarity").to_numpy(), k - 1)[:k]
            t = t.take(idx)
        keep.append(t)
        if len(keep) > 64:
            keep = [_finish_top(keep, k, per_file)]
    if not keep:
        return None
    return _finish_top(keep, k, per_file)


def _best_per_path(t: pa.Table) -> pa.Table:
    t = t.sort_by([("similarity", "descending")])
    codes = pc.dictionary_encode(t.column("path")).combine_chunks().indices.to_numpy()
    _, first = np.unique(codes, return_index=True)
    return t.take(np.sort(first))


def _finish_top(tables: list[pa.Table], k: int, per_file: bool) -> pa.Table:
    t = pa.concat_tables(tables)
    if per_file:
        t = _best_per_path(t)
    return t.sort_by([("similarity", "descending"), ("path", "ascending"), ("frame", "ascending")]).slice(0, k)


SIMILAR_COLUMNS = ["path", "frame", "start_s", "end_s", "top_label"]
CACHE_CHUNK_ROWS = 65536


def similarity_cache_dir(out: Output) -> str:
    """Where decoded embeddings are cached: ``OUTPUT/_similar_cache`` locally, else under ~/.cache."""
    if not out._remote:
        return f"{out.root}/_similar_cache"
    key = hashlib.sha256(out.uri.encode()).hexdigest()[:16]
    return os.path.join(os.path.expanduser("~/.cache/yamnet-beam/similar"), key)


def _cache_stem(out: Output, cache_dir: str, part_uri: str) -> str:
    """Cache files are named by the part and its size and mtime, so a rewritten part is never served stale."""
    info = out.fs.info(out._strip(part_uri))
    stamp = f"{info.get('size')}-{mtime_of(info)}".encode()
    name = part_uri.rsplit("/", 1)[-1].removesuffix(".parquet")
    return os.path.join(cache_dir, f"{name}-{hashlib.sha256(stamp).hexdigest()[:12]}")


def _build_part_cache(out: Output, part_uri: str, stem: str) -> None:
    """Decodes one frames part once into unit-length embeddings (``.npy``) and its row columns (``.parquet``)."""
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    pf_rows = []
    matrix = None
    at = 0
    tmp = f"{stem}.tmp-{os.getpid()}"
    with out.fs.open(out._strip(part_uri), "rb") as f:
        pf = schema.parquet_file(f)
        for batch in pf.iter_batches(batch_size=SCAN_BATCH_ROWS, columns=[*SIMILAR_COLUMNS, "embedding"]):
            m = list_matrix(batch.column("embedding")).astype(np.float32, copy=False)
            if matrix is None:
                # float32 even for float16 tables: numpy's float16->float32 conversion would cost 8x the product.
                shape = (pf.metadata.num_rows, m.shape[1])
                matrix = np.lib.format.open_memmap(f"{tmp}.npy", mode="w+", dtype=np.float32, shape=shape)
            norms = _row_norms(m)
            norms[norms == 0] = 1.0
            matrix[at : at + len(m)] = m / norms[:, None]
            at += len(m)
            pf_rows.append(batch.drop_columns(["embedding"]))
    if matrix is None:  # an empty part: nothing to cache, similar() scans it (for nothing)
        return
    matrix.flush()
    del matrix
    pq.write_table(pa.Table.from_batches(pf_rows), f"{tmp}.parquet")
    os.replace(f"{tmp}.parquet", f"{stem}.parquet")
    os.replace(f"{tmp}.npy", f"{stem}.npy")  # last: the .npy is the marker of a complete entry


def _cached_batches(stem: str, path_glob: str | None) -> Iterator[pa.RecordBatch]:
    matrix = np.load(f"{stem}.npy", mmap_mode="r")
    rows = pq.read_table(f"{stem}.parquet").combine_chunks()
    columns = [c.chunk(0) if c.num_chunks else pa.array([], c.type) for c in rows.columns]
    regex = _glob_regex(path_glob) if path_glob else None
    for start in range(0, len(matrix), CACHE_CHUNK_ROWS):
        emb = np.asarray(matrix[start : start + CACHE_CHUNK_ROWS])  # zero-copy view of the mapped file
        emb_col = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
        block = [c.slice(start, len(emb)) for c in columns]
        batch = pa.RecordBatch.from_arrays([*block, emb_col], [*rows.column_names, "embedding"])
        if regex:
            batch = batch.filter(pc.match_substring_regex(batch.column("path"), regex))
        if batch.num_rows:
            yield batch


def build_similarity_cache(out: Output, cache_dir: str | None = None) -> int:
    """Decodes every frames part not yet cached; returns how many parts were decoded now."""
    cache_dir = cache_dir or similarity_cache_dir(out)
    built = 0
    for part in out.frame_files:
        stem = _cache_stem(out, cache_dir, part)
        if not os.path.exists(f"{stem}.npy"):
            _build_part_cache(out, part, stem)
            built += 1
    return built


def similar(
    out: Output,
    vector: QueryVector,
    k: int = 10,
    files: bool = False,
    path_glob: str | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
) -> pa.Table:
    """The ``k`` frames (or, with ``files``, files by their best frame) most similar to ``vector``.

    Brute force, exact. Decoding the Parquet embedding column is what costs (see
    benchmarks/similar_bench.py), so with ``cache`` each frames part is decoded once into unit-length
    vectors in a memory-mapped ``.npy`` (``similarity_cache_dir``); later queries are one
    matrix-vector product per chunk. A part whose size or mtime changed is decoded again.
    """
    if k < 1:
        raise QueryError(f"-k must be at least 1, got {k}")
    results = []
    cache_dir = cache_dir or similarity_cache_dir(out)
    for part in out.frame_files:
        stem = _cache_stem(out, cache_dir, part) if cache else None
        if stem is not None and not os.path.exists(f"{stem}.npy"):
            try:
                _build_part_cache(out, part, stem)
            except OSError as e:  # e.g. a read-only output: search the Parquet directly
                _LOG.warning("cannot cache embeddings in %s (%s); searching the Parquet directly", cache_dir, e)
                stem = None
        if stem is not None and os.path.exists(f"{stem}.npy"):
            results.append(nearest_frames(_cached_batches(stem, path_glob), vector.vector, k, files, normalized=True))
        else:
            batches = scan_parquet(out.fs, [part], [*SIMILAR_COLUMNS, "embedding"], path_glob)
            results.append(nearest_frames(batches, vector.vector, k, files))
    results = [r for r in results if r is not None]
    if not results:
        raise QueryError("no frames to search (does --path match anything?)")
    t = _finish_top(results, k, files)
    t = t.select(["path", "frame", "start_s", "end_s", "similarity", "top_label"])
    ranks = pa.array(np.arange(1, t.num_rows + 1, dtype=np.int32))
    return t.add_column(0, "rank", ranks)


# --------------------------------------------------------------------------------------------
# Summary


def summary(out: Output, top_n: int = 10) -> pa.Table:
    """Coverage of a run as ``section, item, value`` rows: files by status, errors by kind, audio, top labels."""
    sql = """
        SELECT 1 AS o, 'files' AS section, 'matched' AS item, count(*)::DOUBLE AS value FROM files
        UNION ALL SELECT 2, 'files', status, count(*) FROM files GROUP BY status
        UNION ALL SELECT 3, 'errors', error_kind, count(*) FROM files WHERE status = 'error' GROUP BY error_kind
        UNION ALL SELECT 4, 'audio', 'hours', coalesce(sum(duration_s), 0) / 3600 FROM files
        UNION ALL SELECT 5, 'audio', 'frames', count(*) FROM frames
        UNION ALL (SELECT 6, 'top_label (frames)', top_label, count(*) FROM frames
                   GROUP BY top_label ORDER BY count(*) DESC, top_label LIMIT $n)
    """
    return _arrow(out.con, f"SELECT section, item, value FROM ({sql}) ORDER BY o, value DESC, item", {"n": top_n})


# --------------------------------------------------------------------------------------------
# Output


def _is_number(t: pa.DataType) -> bool:
    """Whether a column of type ``t`` is right-aligned."""
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _cell(v: Any, t: pa.DataType) -> str:
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
    numeric = [_is_number(t) for t in types]
    rows = [[_cell(v, t) for v, t in zip(r.values(), types, strict=True)] for r in table.to_pylist()]
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True))

    out = [line(names).rstrip(), "  ".join("-" * w for w in widths)]
    out += [line(r).rstrip() for r in rows]
    out.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(out) + "\n"


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
        text = json.dumps(table.to_pylist(), indent=1, default=str) + "\n"
    if dest:
        with open(dest, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        stream.write(text)
