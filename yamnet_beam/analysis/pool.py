"""The clip table: per-file mean/max scores and mean embedding, streamed over frames once with one
accumulator per file in flight.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from yamnet_beam.analysis.output import Output
from yamnet_beam.model.labels import Labels
from yamnet_beam.table import schema
from yamnet_beam.table.layout import CLIPS_DIR
from yamnet_beam.table.output import SCAN_BATCH_ROWS, scan_parquet
from yamnet_beam.table.schema import list_matrix
from yamnet_beam.uris import user_uri


class _Acc:
    __slots__ = ("n", "score_sum", "score_max", "emb_sum", "head_sum")

    def __init__(self, num_classes: int, dim: int | None):
        self.head_sum: np.ndarray | float = 0.0
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
    scores: tuple[str, list[str], Labels] | None = None,
) -> Iterator[pa.Table]:
    """Per-file mean/max scores (and mean embedding) as tables of ``chunk_files`` rows (clips schema).

    Streams frames once. A file's row is emitted as soon as all the frames files/ promised for it
    have been seen, so memory holds only files in flight (frames of one file are written together).
    """
    column, files, labels = scores or ("scores", out.frame_files, out.labels)  # or a head's: column, parts, classes
    num_classes = len(labels)
    dim = schema.EMBEDDING_DIM if with_embedding else None
    expected = _expected_frames(out)
    accs: dict[str, _Acc] = {}
    done: list[tuple[str, _Acc]] = []
    # frames of `run --head` carry a head's scores: the clip table gets their mean too
    heads = scores is None and "head_scores" in out.frame_schema.names
    cols = ["path", column, *(["embedding"] if with_embedding else []), *(["head_scores"] if heads else [])]
    for batch in scan_parquet(out.fs, files, cols, path_glob, batch_rows):
        codes = pc.dictionary_encode(batch.column("path"))
        idx = codes.indices.to_numpy()
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
        counts = np.diff(np.r_[starts, len(order)])
        scores = list_matrix(batch.column(column))[order]
        s_sum = np.add.reduceat(scores, starts, axis=0, dtype=np.float64)
        s_max = np.maximum.reduceat(scores, starts, axis=0)
        e_sum = None
        if with_embedding:
            emb = list_matrix(batch.column("embedding"))[order]
            e_sum = np.add.reduceat(emb, starts, axis=0, dtype=np.float64)
        h_sum = None
        if heads:
            h_sum = np.add.reduceat(list_matrix(batch.column("head_scores"))[order], starts, axis=0, dtype=np.float64)
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
            if h_sum is not None:
                acc.head_sum = acc.head_sum + h_sum[g]
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
    head_classes = 0
    if isinstance(done[0][1].head_sum, np.ndarray):
        h = (np.stack([a.head_sum for _, a in done]) / n[:, None]).astype(np.float32)
        head_classes = h.shape[1]
        columns["mean_head_scores"] = pa.FixedSizeListArray.from_arrays(pa.array(h.reshape(-1)), head_classes)
    full = schema.clips_schema(num_classes=len(labels), head_classes=head_classes)
    return pa.Table.from_pydict(columns, schema=pa.schema([full.field(c) for c in columns]))


def pool(out: Output, dest: str | None = None, path_glob: str | None = None) -> str:
    """Writes the clip table (one row per file, :func:`yamnet_beam.table.schema.clips_schema`); returns its URI.

    ``dest`` is a directory (default ``OUTPUT/clips``); its previous Parquet files are replaced, since
    the clip table is derived data that a new pooling makes anew.
    """
    fs, root = fsspec.core.url_to_fs(dest or out.child_uri(CLIPS_DIR))
    root = root.rstrip("/")
    fs.makedirs(root, exist_ok=True)
    for old in fs.glob(f"{root}/*.parquet"):
        fs.rm(old)
    path = f"{root}/part-00000-of-00001.parquet"
    heads = out.frame_schema.field("head_scores").type.list_size if "head_scores" in out.frame_schema.names else 0
    clip_schema = schema.clips_schema(len(out.labels), metadata=out.run_metadata or None, head_classes=heads)
    with fs.open(path, "wb") as f, pq.ParquetWriter(f, clip_schema, compression="zstd") as writer:
        for table in iter_pooled(out, path_glob):  # clips_schema's fields already; the writer adds the metadata
            writer.write_table(table)
    return user_uri(fs, path)
