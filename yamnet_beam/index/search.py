"""Searching the current index shards: fan out over the shards, merge their top-k.

Each shard answers from its memory-mapped HNSW graph with one thread. ``--path`` filters are applied to
the shard's row mapping first (a regex over its distinct paths, not its rows): when few rows match (at
most :data:`EXACT_SUBSET_ROWS`) they are compared exactly, from the stored vectors; else the shard
over-fetches by the inverse of the matching fraction and filters, fetching four times more until ``k``
rows pass or the whole shard was compared. ``files`` (best frame per file) over-fetches the same way until
``k`` distinct paths are found. A shard of at most ``k`` rows is searched exactly. Similarities are the
stored (f16/i8) vectors' cosine with the query.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from yamnet_beam.index.covers import Shard, index_dir, shard_file
from yamnet_beam.index.shards import OpenShard
from yamnet_beam.table.layout import INDEX_ROWS, INDEX_VECTORS
from yamnet_beam.table.output import OutputDir, glob_regex

# A --path matching at most this many rows of a shard: they are compared exactly (~2.5 us a row), else the
# shard over-fetches (k / matching fraction candidates; 47 ms at 1.4 % of 115 k rows, 7 ms at 14 %).
EXACT_SUBSET_ROWS = 8192
EXPANSION_SEARCH = 128  # HNSW candidates per query (--ef): recall@10 1.000 on real frames, see the README
RESULT_COLUMNS = ["path", "frame", "start_s", "end_s", "similarity", "top_label"]


def local_copy(out: OutputDir, cache_root: str | None = None) -> str:
    """Where the shards can be memory-mapped: ``OUTPUT/index`` itself, or for a remote output a local copy."""
    if not out.remote:
        return index_dir(out)
    key = hashlib.sha256(out.uri.encode()).hexdigest()[:16]
    return os.path.join(cache_root or os.path.expanduser("~/.cache/yamnet-beam/index"), key)


def open_shards(out: OutputDir, shards: Sequence[Shard], expansion_search: int | None = None) -> list[OpenShard]:
    """Opens shards memory-mapped (a remote output's shards are copied to a local cache once, by name)."""
    where = local_copy(out)
    opened = []
    for s in shards:
        paths = []
        for suffix in (INDEX_VECTORS, INDEX_ROWS):
            src = shard_file(out, s.name, suffix)
            local = src if not out.remote else os.path.join(where, src.rsplit("/", 1)[-1])
            if out.remote and not os.path.exists(local):
                os.makedirs(where, exist_ok=True)
                out.fs.get_file(src, f"{local}.part")
                os.replace(f"{local}.part", local)
            paths.append(local)
        opened.append(OpenShard(s, *paths, expansion_search=expansion_search or EXPANSION_SEARCH))
    return opened


def _path_mask(rows: pa.Table, regex: str | None) -> np.ndarray | None:
    """Which rows' paths match (decided once per distinct path), or None for no filter."""
    if regex is None:
        return None
    col = rows.column("path").combine_chunks()
    hits = pc.match_substring_regex(col.dictionary, regex).to_numpy(zero_copy_only=False)
    return hits[col.indices.to_numpy(zero_copy_only=False)]


def _table(shard: OpenShard, keys: np.ndarray, sims: np.ndarray) -> pa.Table:
    t = shard.rows.take(pa.array(keys.astype(np.int64)))
    cols = {c: t.column(c) for c in ("path", "frame", "start_s", "end_s", "top_label")}
    cols["path"] = cols["path"].cast(pa.string())
    cols["top_label"] = cols["top_label"].cast(pa.string())
    cols["similarity"] = pa.chunked_array([pa.array(sims.astype(np.float32))])
    return pa.table({c: cols[c] for c in RESULT_COLUMNS})


def _best_per_path(t: pa.Table) -> pa.Table:
    t = t.sort_by([("similarity", "descending"), ("path", "ascending"), ("frame", "ascending")])
    codes = pc.dictionary_encode(t.column("path")).combine_chunks().indices.to_numpy()
    _, first = np.unique(codes, return_index=True)
    return t.take(np.sort(first))


def _exact(shard: OpenShard, unit: np.ndarray, keys: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``count`` of ``keys`` by the cosine of their stored vectors with the query, brute force.

    From the shard file's mapped vectors with USearch's SIMD kernel (8x numpy's float16 product); through
    ``Index.get`` only if the file's layout is not the one expected.
    """
    if not len(keys):
        return keys, np.zeros(0, np.float32)
    if shard.vectors is not None:
        from usearch.index import search as brute_force

        found = brute_force(
            shard.vectors[keys], shard.query_vector(unit), min(count, len(keys)), "cos", exact=True, threads=1
        )
        return keys[np.asarray(found.keys, np.int64)], 1.0 - np.asarray(found.distances, np.float32)
    got = shard.index.get(keys.astype(np.uint64))
    m = np.stack(got).astype(np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", m, m))
    with np.errstate(divide="ignore", invalid="ignore"):
        sims = np.nan_to_num((m @ unit) / norms, nan=-1.0)
    return keys, sims


def search_shard(shard: OpenShard, unit: np.ndarray, k: int, files: bool = False, regex: str | None = None) -> pa.Table:
    """The shard's best ``k`` rows (or files) for the unit query vector, after the path filter."""
    n = len(shard)
    mask = _path_mask(shard.rows, regex)
    matching = n if mask is None else int(mask.sum())
    if n == 0 or matching == 0:
        return _table(shard, np.zeros(0, np.int64), np.zeros(0, np.float32))
    if mask is not None and matching <= EXACT_SUBSET_ROWS:
        keys, sims = _exact(shard, unit, np.flatnonzero(mask), matching if files else k)
        return _top(_table(shard, keys, sims), k, files)
    q = shard.query_vector(unit)
    count = math.ceil(k * (4 if files else 1) * n / matching) + (k if mask is not None else 0)
    while True:
        count = min(count, n)
        exact = count >= n
        found = shard.index.search(q, count, threads=1, exact=exact)
        keys = np.asarray(found.keys, np.int64)
        sims = 1.0 - np.asarray(found.distances, np.float32)
        if mask is not None:
            ok = mask[keys]
            keys, sims = keys[ok], sims[ok]
        t = _top(_table(shard, keys, sims), k, files)
        if t.num_rows >= k or exact:
            return t
        count *= 4


def _top(t: pa.Table, k: int, files: bool) -> pa.Table:
    if files:
        t = _best_per_path(t)
    return t.sort_by([("similarity", "descending"), ("path", "ascending"), ("frame", "ascending")]).slice(0, k)


def search(
    shards: Sequence[OpenShard], vector: np.ndarray, k: int = 10, files: bool = False, path_glob: str | None = None
) -> pa.Table:
    """Top ``k`` over all shards (``files``: files by their best frame), columns :data:`RESULT_COLUMNS`."""
    q = np.asarray(vector, np.float32).reshape(-1)
    norm = float(np.linalg.norm(q))
    if not norm or not math.isfinite(norm):
        raise ValueError("the query embedding is all zeros or not finite")
    unit = q / norm
    regex = glob_regex(path_glob) if path_glob else None
    tables = [search_shard(s, unit, k, files, regex) for s in shards]
    if not tables:
        return pa.table({c: pa.array([], t) for c, t in _EMPTY})
    return _top(pa.concat_tables(tables), k, files)


_EMPTY = [
    ("path", pa.string()),
    ("frame", pa.int32()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("similarity", pa.float32()),
    ("top_label", pa.string()),
]
