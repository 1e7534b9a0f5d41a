"""How fast is exact cosine search over a million YAMNet embeddings? Prints timings; asserts nothing.

Writes a synthetic output (``--rows`` x 1024 frames, float32 and float16 embeddings, zstd Parquet
with 4096-row row groups like the pipeline's) under ``--dir`` and times a top-k query:

1. DuckDB ``array_cosine_similarity(embedding::FLOAT[1024], q)`` straight over the Parquet file;
2. ``similar.similar(cache=False)``: Arrow record batches from the Parquet file, one numpy
   matrix-vector product per batch over a zero-copy view of the embedding column;
3. ``similar.similar`` with its cache: each frames part decoded once into unit-length vectors in a
   memory-mapped ``.npy`` (build time printed separately), then one product per 64k-row chunk.

Usage: ``python benchmarks/similar_bench.py [--rows 1000000] [--dir /tmp/similar_bench] [--repeat 3]``
(needs ~12 GB of disk for 1M rows; the data is reused between runs). The slow scans run once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from yamnet_beam.analysis import output, similar

DIM = 1024
CHUNK = 16384


def _chunk(rng: np.random.Generator, start: int, n: int, dtype: str) -> pa.Table:
    # Post-ReLU averages are non-negative, like YAMNet's embedding.
    emb = np.abs(rng.standard_normal((n, DIM), dtype=np.float32)).astype(dtype)
    frame = np.arange(start, start + n, dtype=np.int32) % 1000
    return pa.table(
        {
            "path": pa.array([f"synthetic/{(start + i) // 1000:06d}.wav" for i in range(n)]),
            "frame": pa.array(frame),
            "start_s": pa.array(frame * 0.48),
            "end_s": pa.array(frame * 0.48 + 0.975),
            "top_label": pa.array(["Speech"] * n),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM),
        }
    )


def make_table(dest: Path, rows: int, dtype: str) -> Path:
    """One Parquet file of ``rows`` synthetic frames (reused if it already exists with that size)."""
    (dest / "frames").mkdir(parents=True, exist_ok=True)
    path = dest / "frames" / "part-00000-of-00001.parquet"
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    rng = np.random.default_rng(0)
    writer = None
    t0 = time.perf_counter()
    for start in range(0, rows, CHUNK):
        t = _chunk(rng, start, min(CHUNK, rows - start), dtype)
        if writer is None:
            writer = pq.ParquetWriter(path, t.schema, compression="zstd", compression_level=1)
        writer.write_table(t, row_group_size=4096)
    writer.close()
    size_gb = path.stat().st_size / 1e9
    print(f"  wrote {rows:,} {dtype} rows to {path} ({size_gb:.2f} GB) in {time.perf_counter() - t0:.0f} s")
    return path


def _time(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def bench(dest: Path, rows: int, dtype: str, k: int, repeat: int) -> None:
    print(f"\n== {rows:,} rows, {dtype} embeddings ==")
    path = make_table(dest / dtype, rows, dtype)
    q = np.abs(np.random.default_rng(1).standard_normal(DIM, dtype=np.float32))

    con = duckdb.connect()
    sql = (
        "SELECT path, frame, array_cosine_similarity(embedding::FLOAT[1024], $q::FLOAT[1024]) AS s "
        "FROM read_parquet($f) ORDER BY s DESC LIMIT $k"
    )
    t_duck, duck = _time(lambda: con.execute(sql, {"q": q.tolist(), "f": str(path), "k": k}).fetchall(), 1)
    print(f"  duckdb array_cosine_similarity over Parquet : {t_duck:6.2f} s  ({rows / t_duck / 1e6:.2f} M rows/s)")

    out = output.open_output(str(dest / dtype))
    vec = similar.QueryVector(q, "benchmark")
    t_np, top = _time(lambda: similar.similar(out, vec, k, cache=False), 1)
    print(f"  Arrow batches + numpy over Parquet (no cache): {t_np:6.2f} s  ({rows / t_np / 1e6:.2f} M rows/s)")
    print(f"  same top-{k} frames as DuckDB: {[r[1] for r in duck] == top.column('frame').to_pylist()}")

    cache = similar.similarity_cache_dir(out)
    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    similar.build_similarity_cache(out, cache)
    print(f"  building the cache (decode once, normalise)  : {time.perf_counter() - t0:6.2f} s")
    t_c, top_c = _time(lambda: similar.similar(out, vec, k, cache_dir=cache), repeat)
    print(f"  similar.similar over the memory-mapped cache   : {t_c:6.2f} s  ({rows / t_c / 1e6:.2f} M rows/s)")
    same = top_c.column("frame").to_pylist() == top.column("frame").to_pylist()
    print(f"  same top-{k} frames as without the cache: {same}")
    t_f, _ = _time(lambda: similar.similar(out, vec, k, files=True, cache_dir=cache), repeat)
    print(f"  ... with --files (best frame per file)       : {t_f:6.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/tmp/similar_bench")
    ap.add_argument("--dtype", action="append", choices=["float32", "float16"])
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores; duckdb {duckdb.__version__}, pyarrow {pa.__version__}, numpy {np.__version__}")
    for dtype in args.dtype or ["float32", "float16"]:
        bench(Path(args.dir), args.rows, dtype, args.k, args.repeat)


if __name__ == "__main__":
    main()
