"""The output tables' Arrow schemas, builders and readers: the one place that says what a row is.

Builders take contiguous numpy blocks and wrap them as Arrow arrays without per-row Python
objects, so writing costs little next to inference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from yamnet_beam.errors import UserError
from yamnet_beam.model.graph import EMBEDDING_DIM, NUM_CLASSES

METADATA_KEY = b"yamnet_beam"
EMBEDDING_DTYPES = ("float32", "float16")

STATUS_OK = "ok"
STATUS_ERROR = "error"


def frames_schema(
    embedding_dtype: str = "float32",
    num_classes: int = NUM_CLASSES,
    embedding_dim: int = EMBEDDING_DIM,
    metadata: Mapping[str, Any] | None = None,
    head_classes: int = 0,
) -> pa.Schema:
    """One row per YAMNet frame (0.975 s window) of one file; with ``head_classes``, a custom head's columns too."""
    if embedding_dtype not in EMBEDDING_DTYPES:
        raise ValueError(f"embedding_dtype must be one of {EMBEDDING_DTYPES}, got {embedding_dtype!r}")
    schema = pa.schema(
        [
            pa.field("path", pa.string(), nullable=False),
            pa.field("frame", pa.int32(), nullable=False),
            pa.field("start_s", pa.float64(), nullable=False),
            pa.field("end_s", pa.float64(), nullable=False),
            # Real (non-padding) samples in the window: < 15600 only in a file's zero-padded last frame.
            pa.field("valid_samples", pa.int32(), nullable=False),
            pa.field("scores", pa.list_(pa.float32(), num_classes), nullable=False),
            pa.field(
                "embedding", pa.list_(pa.from_numpy_dtype(np.dtype(embedding_dtype)), embedding_dim), nullable=False
            ),
            pa.field("top_label", pa.string(), nullable=False),
            pa.field("top_score", pa.float32(), nullable=False),
            *(head_fields(head_classes) if head_classes else []),
        ]
    )
    return with_metadata(schema, metadata)


def head_fields(num_classes: int) -> list[pa.Field]:
    """A custom head's columns (``run --head`` in frames/, ``apply`` in heads/<name>/)."""
    return [
        pa.field("head_scores", pa.list_(pa.float32(), num_classes), nullable=False),
        pa.field("head_top_label", pa.string(), nullable=False),
        pa.field("head_top_score", pa.float32(), nullable=False),
        # The classes at or over their calibrated threshold (may be empty).
        pa.field("head_labels", pa.list_(pa.string()), nullable=False),
    ]


def heads_schema(num_classes: int, metadata: Mapping[str, Any] | None = None) -> pa.Schema:
    """One row per frame of a finished output, scored by a head from its stored embedding."""
    fields = [
        pa.field("path", pa.string(), nullable=False),
        pa.field("frame", pa.int32(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        *head_fields(num_classes),
    ]
    return with_metadata(pa.schema(fields), metadata)


def head_arrays(head_scores: np.ndarray, classes: Sequence[str], thresholds: Sequence[float]) -> list[pa.Array]:
    """The :func:`head_fields` columns from ``[F, K]`` head scores."""
    count = len(head_scores)
    names = np.asarray(classes, dtype=object)
    top = head_scores.argmax(axis=1) if count else np.zeros(0, np.int64)
    over = np.asarray(head_scores) >= np.asarray(thresholds, dtype=np.float32)[None, :]
    offsets = np.r_[0, np.cumsum(over.sum(axis=1))].astype(np.int32)
    labels = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.tile(names, count)[over.reshape(-1)], pa.string()))
    return [
        _fixed_size_list(head_scores, np.float32),
        pa.array(names[top], pa.string()),
        pa.array(np.asarray(head_scores)[np.arange(count), top].astype(np.float32)),
        labels,
    ]


FILES_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # "ok" | "error"
        pa.field("error_kind", pa.string()),  # null when ok; a stable kind such as "corrupt"
        pa.field("error", pa.string()),  # null when ok; a readable reason
        pa.field("duration_s", pa.float64()),
        pa.field("sample_rate", pa.int32()),
        pa.field("channels", pa.int32()),
        pa.field("format", pa.string()),
        pa.field("decoder", pa.string()),
        pa.field("frames", pa.int64(), nullable=False),  # rows written to frames/ for this file
        pa.field("warning", pa.string()),  # e.g. shorter than one window, NaN/Inf samples replaced
        pa.field("nonfinite_samples", pa.int64()),  # NaN/Inf sample values replaced by 0
        # Identity and parameters, so that --mode resume can skip what is already done.
        pa.field("size_bytes", pa.int64()),
        pa.field("mtime", pa.float64()),  # modification time, epoch seconds
        pa.field("etag", pa.string()),
        pa.field("fingerprint", pa.string(), nullable=False),  # hash of model + framing + decoding parameters
        pa.field("part", pa.string(), nullable=False),  # the output part (frames/ and files/ file) holding its rows
    ]
)


def files_schema(metadata: Mapping[str, Any] | None = None) -> pa.Schema:
    """One row per matched input, whatever became of it."""
    return with_metadata(FILES_SCHEMA, metadata)


def clips_schema(
    num_classes: int = NUM_CLASSES,
    embedding_dim: int = EMBEDDING_DIM,
    metadata: Mapping[str, Any] | None = None,
    head_classes: int = 0,
) -> pa.Schema:
    """One row per file (``yamnet-beam pool``): its frames pooled, ready to train a clip-level classifier;
    with ``head_classes`` (frames of ``run --head``), the mean of the head's scores too."""
    return with_metadata(
        pa.schema(
            [
                pa.field("path", pa.string(), nullable=False),
                pa.field("status", pa.string()),  # from files/: "ok", or "error" for frames kept before a failure
                pa.field("frames", pa.int64(), nullable=False),  # frames pooled
                pa.field("duration_s", pa.float64()),  # from files/
                pa.field("mean_scores", pa.list_(pa.float32(), num_classes), nullable=False),
                pa.field("max_scores", pa.list_(pa.float32(), num_classes), nullable=False),
                # Always float32: a mean of float16 embeddings is no longer exactly float16.
                pa.field("mean_embedding", pa.list_(pa.float32(), embedding_dim), nullable=False),
                pa.field("top_label", pa.string(), nullable=False),  # highest mean score
                pa.field("top_score", pa.float32(), nullable=False),
                *(
                    [pa.field("mean_head_scores", pa.list_(pa.float32(), head_classes), nullable=False)]
                    if head_classes
                    else []
                ),
            ]
        ),
        metadata,
    )


def with_metadata(schema: pa.Schema, metadata: Mapping[str, Any] | None) -> pa.Schema:
    """Stores run essentials (model SHA-256, framing, versions) as Parquet key-value metadata."""
    if not metadata:
        return schema
    return schema.with_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True, default=str).encode()})


def read_metadata(schema: pa.Schema) -> dict[str, Any]:
    """The run essentials stored by :func:`with_metadata` (empty if absent)."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def parquet_file(f: Any) -> pq.ParquetFile:
    """Opens Parquet from a Python file object (fsspec, BytesIO) so that it is only read in this thread.

    Not ``pq.read_table(f)``, nor ``ParquetFile``'s default pre-buffering: both read through Arrow's
    async I/O, whose callbacks can drop the last reference to the Python file on an Arrow thread
    after the read has returned. When that happens while the interpreter exits, that thread cannot
    take the GIL and the process aborts ("terminate called without an active exception"; seen in CI
    after a successful run).
    """
    return pq.ParquetFile(f, pre_buffer=False)


def read_table(f: Any, columns: Sequence[str] | None = None) -> pa.Table:
    """The whole table (schema metadata included) of Parquet in a Python file object; see :func:`parquet_file`."""
    return parquet_file(f).read(columns=list(columns) if columns else None)


class TableError(UserError):
    """A table that does not hold what its schema promises (damaged or hand-made); the message says what to do."""


def list_matrix(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A (fixed-size) list column as a ``[rows, width]`` numpy array, zero-copy when it is one contiguous chunk.

    Lists read back through DuckDB are variable-size: their width is then that of the (equal) rows.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if arr.null_count:
        raise TableError("a list column holds nulls; the frames table never should: is the file damaged?")
    values = arr.flatten()
    if pa.types.is_fixed_size_list(arr.type):
        width = arr.type.list_size
    else:
        width = len(values) // len(arr) if len(arr) else 0
    return values.to_numpy(zero_copy_only=False).reshape(len(arr), width)


def _fixed_size_list(values: np.ndarray, dtype: np.dtype) -> pa.FixedSizeListArray:
    values = np.ascontiguousarray(values, dtype=dtype)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def frames_table(
    schema: pa.Schema,
    path: str,
    first_frame: int,
    start_s: np.ndarray,
    end_s: np.ndarray,
    valid_samples: np.ndarray,
    scores: np.ndarray,
    embeddings: np.ndarray,
    label_names: Sequence[str] | np.ndarray,
    head: tuple[np.ndarray, Sequence[str], Sequence[float]] | None = None,
) -> pa.Table:
    """Builds the frames rows for consecutive frames of one file from ``[F, C]`` / ``[F, D]`` arrays.

    ``head``: (``[F, K]`` head scores, classes, thresholds) when the schema has the head's columns.
    """
    count = len(scores)
    top = scores.argmax(axis=1)
    names = np.asarray(label_names, dtype=object)
    emb_type = np.float16 if schema.field("embedding").type.value_type == pa.float16() else np.float32
    columns = [
        pa.array([path] * count, pa.string()),
        pa.array(np.arange(first_frame, first_frame + count, dtype=np.int32)),
        pa.array(np.asarray(start_s, dtype=np.float64)),
        pa.array(np.asarray(end_s, dtype=np.float64)),
        pa.array(np.asarray(valid_samples, dtype=np.int32)),
        _fixed_size_list(scores, np.float32),
        _fixed_size_list(embeddings, emb_type),
        pa.array(names[top], pa.string()),
        pa.array(scores[np.arange(count), top].astype(np.float32)),
        *(head_arrays(*head) if head is not None else []),
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def file_row(
    path: str,
    *,
    status: str,
    frames: int = 0,
    error_kind: str | None = None,
    error: str | None = None,
    duration_s: float | None = None,
    sample_rate: int | None = None,
    channels: int | None = None,
    format: str | None = None,  # noqa: A002 - the column's name
    decoder: str | None = None,
    warning: str | None = None,
    nonfinite_samples: int | None = None,
    size_bytes: int | None = None,
    mtime: float | None = None,
    etag: str | None = None,
    fingerprint: str = "",
    part: str = "",
) -> dict[str, Any]:
    """One files/ row as a plain dict (cheap to pickle between steps); :func:`files_table` batches them."""
    if status not in (STATUS_OK, STATUS_ERROR):
        raise ValueError(f"status must be ok or error, got {status!r}")
    return {
        "path": path,
        "status": status,
        "error_kind": error_kind,
        "error": error,
        "duration_s": duration_s,
        "sample_rate": sample_rate,
        "channels": channels,
        "format": format,
        "decoder": decoder,
        "frames": frames,
        "warning": warning,
        "nonfinite_samples": nonfinite_samples,
        "size_bytes": size_bytes,
        "mtime": mtime,
        "etag": etag,
        "fingerprint": fingerprint,
        "part": part,
    }


def files_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema = FILES_SCHEMA) -> pa.Table:
    """Batches files/ rows into one Arrow table of the declared schema."""
    return pa.Table.from_pylist(list(rows), schema=schema)
