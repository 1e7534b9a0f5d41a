"""Exact cosine similarity search over the stored embeddings, with a per-part cache of unit-length
vectors in memory-mapped ``.npy`` files (decoding the Parquet column is what costs, not the
arithmetic), and query vectors from stored frames or from audio embedded now.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from yamnet_beam import framing
from yamnet_beam.analysis.output import Output, QueryError, first_row, sql_table
from yamnet_beam.table import schema
from yamnet_beam.table.layout import SIMILAR_CACHE_DIR
from yamnet_beam.table.output import SCAN_BATCH_ROWS, glob_regex, scan_parquet
from yamnet_beam.table.schema import list_matrix
from yamnet_beam.uris import mtime_of

_LOG = logging.getLogger(__name__)


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
        row = first_row(out.con, "SELECT frames FROM files WHERE path = ? AND frames > 0 LIMIT 1", [c])
        if row:
            return c, int(row[0])
    return None


def frame_vector(out: Output, path: str, index: int) -> QueryVector:
    """The stored embedding of frame ``index`` of ``path``."""
    row = first_row(out.con, "SELECT embedding FROM frames WHERE path = ? AND frame = ? LIMIT 1", [path, int(index)])
    if row is None:
        n = first_row(out.con, "SELECT count(*) FROM frames WHERE path = ?", [path])[0]
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
    t = sql_table(out.con, "SELECT embedding FROM frames WHERE path = ?", [path])
    mean = list_matrix(t.column("embedding")).mean(axis=0, dtype=np.float64)
    return QueryVector(mean.astype(np.float32), f"{path} (mean of its {t.num_rows} frames)")


def _embed_file(out: Output, file: str, seconds: float | None, model_uri: str | None) -> QueryVector:
    from yamnet_beam.audio import AudioDecodeError, decode_file
    from yamnet_beam.model import YamnetModel

    uri = model_uri or out.model_uri
    if not uri:
        from yamnet_beam.model.download import default_model_uri

        uri = default_model_uri()
    try:
        signal, _, _ = decode_file(file)
    except AudioDecodeError as e:
        raise QueryError(f"--to {file}: not in the output, and it cannot be decoded to embed it: {e}") from e
    model = YamnetModel.from_uri(uri)  # batched where the graph allows: the same numbers as the job's
    if seconds is not None:
        i = frame_at(seconds, framing.num_frames(len(signal), out.hop_samples), out.hop_samples)
        start = i * out.hop_samples
        _, emb = model.embed(framing.frame_signal(signal[start : start + framing.WINDOW_SAMPLES]))  # one frame
        what = f"{file} frame {i} (embedded now)"
    else:
        _, emb = model.embed(signal, out.hop_samples)
        what = f"{file} (mean of {len(emb)} frames, embedded now)"
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
    if not out.remote:
        return out.path(SIMILAR_CACHE_DIR)
    key = hashlib.sha256(out.uri.encode()).hexdigest()[:16]
    return os.path.join(os.path.expanduser("~/.cache/yamnet-beam/similar"), key)


def _cache_stem(out: Output, cache_dir: str, part_uri: str) -> str:
    """Cache files are named by the part and its size and mtime, so a rewritten part is never served stale."""
    info = out.fs.info(out.fs_path(part_uri))
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
    with out.fs.open(out.fs_path(part_uri), "rb") as f:
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
    regex = glob_regex(path_glob) if path_glob else None
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


def _index_search(
    out: Output, vector: QueryVector, k: int, files: bool, path_glob: str | None, ef: int | None
) -> tuple[pa.Table | None, set[str] | None, str]:
    """The current index shards' top ``k``, the names of the frames parts they do not cover, and the method.

    ``(None, None, why)`` when there is no current shard (or USearch is not installed): search exactly.
    """
    from yamnet_beam.index import covers

    if not out.fs.exists(covers.index_dir(out)):
        return None, None, "exact: no index"
    state = covers.status(out)
    if not state.current:
        return None, None, state.describe()
    try:
        from yamnet_beam.index import search as index_search
    except ImportError:
        _LOG.warning('the output has an index but USearch is not installed (pip install "yamnet-beam[index]")')
        return None, None, "exact: usearch not installed"
    shards = index_search.open_shards(out, state.current, ef)
    try:
        table = index_search.search(shards, vector.vector, k, files, path_glob)
    except ValueError as e:
        raise QueryError(f"{e}; pick another frame") from e
    return table, {p.name for p in state.uncovered}, state.describe()


def similar(
    out: Output,
    vector: QueryVector,
    k: int = 10,
    files: bool = False,
    path_glob: str | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    exact: bool = False,
    ef: int | None = None,
) -> pa.Table:
    """The ``k`` frames (or, with ``files``, files by their best frame) most similar to ``vector``.

    With a current index (``yamnet-beam index``) and not ``exact``, its shards answer for the parts they
    cover (approximate: see :mod:`yamnet_beam.index.search`; ``ef`` trades speed for recall) and the parts
    no current shard covers (new, or rewritten since) are searched exactly; the two top-k are merged. The
    result's schema metadata ``search`` says which, e.g. ``index: 4 shards (f16) over 40 parts + exact: 1 parts``.

    Exact search is brute force. Decoding the Parquet embedding column is what costs (see
    benchmarks/similar_bench.py), so with ``cache`` each frames part is decoded once into unit-length
    vectors in a memory-mapped ``.npy`` (``similarity_cache_dir``); later queries are one
    matrix-vector product per chunk. A part whose size or mtime changed is decoded again.
    """
    if k < 1:
        raise QueryError(f"-k must be at least 1, got {k}")
    results = []
    parts = list(out.frame_files)
    how = f"exact: {len(parts)} parts"
    if not exact:
        found, uncovered, how = _index_search(out, vector, k, files, path_glob, ef)
        if found is not None:
            results.append(found)
            parts = [p for p in parts if p.rsplit("/", 1)[-1] in uncovered]
    cache_dir = cache_dir or similarity_cache_dir(out)
    for part in parts:
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
    columns = ["path", "frame", "start_s", "end_s", "similarity", "top_label"]
    results = [_plain(r.select(columns)) for r in results if r is not None and r.num_rows]
    if not results:
        raise QueryError("no frames to search (does --path match anything?)")
    t = _finish_top(results, k, files)
    ranks = pa.array(np.arange(1, t.num_rows + 1, dtype=np.int32))
    return t.add_column(0, "rank", ranks).replace_schema_metadata({b"search": how.encode()})


def _plain(t: pa.Table) -> pa.Table:
    """Nullable fields without metadata, so exact and index results concatenate."""
    return t.cast(pa.schema([(f.name, f.type) for f in t.schema]))
