"""Building one index shard from a group of committed frames parts, and opening one to search.

Each embedding is scaled to unit length and stored at reduced precision in a USearch HNSW index with the
cosine metric: ``f16`` as is, ``i8`` as ``rint(x / max|x| * 127)`` per vector (cosine ignores the scale; it
keeps recall@10 at 0.98 where USearch's own float->int8 cast gives 0.96). The key of a row is its row number
in the shard; ``.rows.arrow`` (Arrow IPC, memory-mapped) maps it back to path, frame, times and top label,
so a query reads no Parquet. Built with one thread, a shard is the same bytes every time it is built.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from yamnet_beam.index.covers import BuildParams, Part, Shard
from yamnet_beam.table import schema
from yamnet_beam.table.layout import INDEX_COVERS, INDEX_ROWS, INDEX_VECTORS, TMP_DIR
from yamnet_beam.table.output import OutputDir, write_json

ROW_COLUMNS = ["path", "frame", "start_s", "end_s", "top_label"]
ROWS_SCHEMA = pa.schema(
    [
        ("path", pa.dictionary(pa.int32(), pa.string())),
        ("frame", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("top_label", pa.dictionary(pa.int32(), pa.string())),
    ]
)


def unit_rows(m: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); all-zero rows stay zero."""
    m = np.asarray(m, np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", m, m))
    norms[norms == 0] = 1.0
    return m / norms[:, None]


def quantise(unit: np.ndarray, precision: str) -> np.ndarray:
    """Unit vectors as stored: float16, or int8 scaled per vector by its largest magnitude."""
    if precision == "f16":
        return unit.astype(np.float16)
    peak = np.abs(unit).max(axis=-1, keepdims=True)
    peak[peak == 0] = 1.0
    return np.rint(unit / peak * 127).astype(np.int8)


def new_index(ndim: int, params: BuildParams):
    from usearch.index import Index

    return Index(
        ndim=ndim,
        metric="cos",
        dtype=params.precision,
        connectivity=params.connectivity,
        expansion_add=params.expansion_add,
    )


def _part_batches(out: OutputDir, part: Part) -> Iterator[pa.RecordBatch]:
    with out.fs.open(out.fs_path(part.uri), "rb") as f:
        yield from schema.parquet_file(f).iter_batches(batch_size=65536, columns=[*ROW_COLUMNS, "embedding"])


def build_shard(output: str, name: str, parts: Sequence[Part], params: BuildParams, threads: int = 1) -> Shard:
    """Builds ``index/shard-<name>.*`` from ``parts`` and commits it (vectors, rows, then its ``.json``).

    Written into ``_tmp/`` locally and moved into place, so a killed build leaves no shard; the ``.json``
    is written last. The part's fingerprints are the planner's (the job holds the lease: nothing rewrites
    a part meanwhile).
    """
    out = OutputDir(output)
    params.check()
    rows_tables, vectors, counts = [], [], []
    for part in parts:
        n = 0
        for batch in _part_batches(out, part):
            vectors.append(quantise(unit_rows(schema.list_matrix(batch.column("embedding"))), params.precision))
            rows_tables.append(pa.Table.from_batches([batch.select(ROW_COLUMNS)]))
            n += batch.num_rows
        counts.append(n)
    ndim = vectors[0].shape[1] if vectors else 1024
    index = new_index(ndim, params)
    if vectors:
        matrix = np.concatenate(vectors)
        index.add(np.arange(len(matrix), dtype=np.uint64), matrix, threads=threads)
    rows = _rows_table(rows_tables)
    shard = Shard(
        name, tuple((p.name, p.fingerprint, c) for p, c in zip(parts, counts, strict=True)), params, int(ndim)
    )
    _commit(out, shard, index, rows)
    return shard


def _rows_table(tables: list[pa.Table]) -> pa.Table:
    if not tables:
        return ROWS_SCHEMA.empty_table()
    t = pa.concat_tables(tables)
    cols = []
    for f in ROWS_SCHEMA:
        c = t.column(f.name)
        if pa.types.is_dictionary(f.type):
            c = pc.dictionary_encode(c.cast(pa.string()).combine_chunks())
        cols.append(c.cast(f.type))
    return pa.Table.from_arrays(cols, schema=ROWS_SCHEMA).combine_chunks()


def _commit(out: OutputDir, shard: Shard, index, rows: pa.Table) -> None:
    from yamnet_beam.index.covers import index_dir, shard_file

    local = tempfile.mkdtemp(prefix="yamnet-beam-shard-")
    try:
        index.save(os.path.join(local, "v"))
        with ipc.new_file(os.path.join(local, "r"), ROWS_SCHEMA) as w:
            w.write_table(rows, max_chunksize=max(rows.num_rows, 1))
        tmp = f"{out.path(TMP_DIR)}/index-{shard.name}-{uuid.uuid4().hex}"
        out.fs.makedirs(tmp, exist_ok=True)
        out.fs.makedirs(index_dir(out), exist_ok=True)
        for src, suffix in (("v", INDEX_VECTORS), ("r", INDEX_ROWS)):
            out.fs.put_file(os.path.join(local, src), f"{tmp}/{src}")
            out.fs.mv(f"{tmp}/{src}", shard_file(out, shard.name, suffix))
        out.fs.rm(tmp, recursive=True)
    finally:
        shutil.rmtree(local, ignore_errors=True)
    cover = shard_file(out, shard.name, INDEX_COVERS)
    write_json(out.fs.unstrip_protocol(cover) if out.remote else cover, shard.to_json())


class OpenShard:
    """A shard opened for search: its index and rows memory-mapped from local files (no copy in memory)."""

    def __init__(self, shard: Shard, vectors_path: str, rows_path: str, expansion_search: int | None = None):
        from usearch.index import Index

        self.shard = shard
        self.index = Index.restore(vectors_path, view=True)
        if self.index is None:
            raise OSError(f"{vectors_path} is not a USearch index")
        if expansion_search:
            self.index.expansion_search = expansion_search
        self._source = pa.memory_map(rows_path)
        self.rows = ipc.open_file(self._source).read_all()
        if self.rows.num_rows != len(self.index):
            raise OSError(f"{rows_path}: {self.rows.num_rows} rows for {len(self.index)} vectors")
        self.vectors = _mapped_vectors(vectors_path, self.rows.num_rows, shard.ndim, shard.params.precision, self.index)

    def __len__(self) -> int:
        return self.rows.num_rows

    def query_vector(self, unit: np.ndarray) -> np.ndarray:
        return quantise(unit.reshape(1, -1), self.shard.params.precision)[0]


def _mapped_vectors(path: str, rows: int, ndim: int, precision: str, index) -> np.ndarray | None:
    """The shard's stored vectors as a memory-mapped ``[rows, ndim]`` array, in key order; None if the file differs.

    A saved USearch index starts with its vectors: two uint32 (rows, bytes per row), then the rows in slot
    order, which is key order for a shard built single-threaded with keys 0..n-1. Checked against the
    header and the first vector USearch itself returns; comparing a few thousand rows exactly (``--path``)
    reads them from here instead of one ``Index.get`` per key (200 ms for 16 k rows).
    """
    dtype = np.dtype(np.float16 if precision == "f16" else np.int8)
    if rows == 0:
        return None
    header = np.fromfile(path, dtype=np.uint32, count=2)
    if len(header) != 2 or int(header[0]) != rows or int(header[1]) != ndim * dtype.itemsize:
        return None
    m = np.memmap(path, dtype=dtype, mode="r", offset=8, shape=(rows, ndim))
    first = index.get(np.uint64(0))
    return m if first is not None and np.array_equal(np.asarray(first).reshape(-1), m[0]) else None
