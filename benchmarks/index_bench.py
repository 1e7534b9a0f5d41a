"""The similarity index against exact search: build speed, disk, query latency, memory and recall@10.

(a) Real YAMNet embeddings: the job run over varied audio synthesised here (a speech-like voice, the speech
    fixtures, tones, coloured noises, chirps, pulse trains and note sequences) at a short hop, >= 100 k frames.
    For each precision and shard size: build vectors/s on one core, disk bytes per frame, query p50/p99 on
    one core, query memory (a fresh process: anonymous RSS vs mapped file pages), recall@10 against exact
    search over 500 queries (a returned frame counts when its exact similarity reaches the 10th best's: silence
    and steady tones repeat one vector many times). Also the ``index`` job on 2 workers vs 1, interleaved.
(b) Synthetic vectors: one 262,144-frame f16 shard built once; 1 M and 10 M frames are 4 and 38 hard links to
    it (a full 10 M build takes hours on this machine; latency depends on how many shards of what size are
    searched, not on their content, but every link maps the same pages, so the 10 M figure is with the shards
    in memory). Exact search over a 1 M float32 memory-mapped matrix (today's ``similar`` cache) is timed in
    the same run, interleaved, as the baseline.

``--linked_real`` does (b) with the real run's shard (all its frames) as the one linked instead; the README's
(b) table is that (on the 2 loaded cores the synthetic 262,144-frame build did not finish in 20 minutes).

Usage: ``python benchmarks/index_bench.py [--dir /tmp/index_bench] [--repeat 2] [--skip_synthetic]``;
``--path_only --linked_real`` reuses the run and measures only ``--path`` and (b) over the real shard.
The audio, the run and the synthetic shard are reused between runs. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench.corpus import speech_16k  # noqa: E402

SR = 16000
DIM = 1024
SHARD = 262_144


def log(msg: str) -> None:
    print(msg, flush=True)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------- (a) real embeddings


def make_audio(d: Path, fixtures: Path, files: int, seconds: float) -> None:
    """Varied sounds, ``files`` files of ``seconds`` each; deterministic."""
    import soundfile as sf

    if d.exists() and len(list(d.glob("*.wav"))) >= files:
        return
    d.mkdir(parents=True, exist_ok=True)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    rng = np.random.default_rng(0)
    speech = [sf.read(fixtures / "speech_16k_float32.wav", dtype="float32")[0]]
    for i in range(files):
        kind = i % 7
        if kind == 0:
            x = speech_16k(seconds, seed=i)
        elif kind == 1:
            x = np.tile(speech[0], int(np.ceil(n / len(speech[0]))))[:n] * (0.5 + 0.1 * (i % 5))
            x = x + 0.01 * (i % 3) * rng.standard_normal(n)
        elif kind == 2:
            x = 0.3 * np.sin(2 * np.pi * (100 + 97 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
        elif kind == 3:
            spec = np.fft.rfft(rng.standard_normal(n))
            spec /= np.maximum(np.arange(len(spec)), 1) ** ((i % 5) / 4)
            x = np.fft.irfft(spec, n)
            x = 0.3 * x / np.abs(x).max()
        elif kind == 4:
            f0, f1 = 100 + 50 * (i % 9), 6000 - 400 * (i % 11)
            period = 2.0 + i % 4
            tc = np.mod(t, period)
            x = 0.3 * np.sin(2 * np.pi * (f0 * tc + (f1 - f0) * tc**2 / (2 * period)))
        elif kind == 5:
            rate = 1 + i % 13
            env = (np.sin(2 * np.pi * rate * t) > 0.5).astype(np.float64)
            x = 0.3 * env * np.sign(np.sin(2 * np.pi * (200 + 30 * i) * t))
        else:  # a melody: notes of a scale with harmonics and decay
            notes = rng.integers(0, 12, int(seconds * 4) + 1)
            f = 220 * 2 ** (notes[(t * 4).astype(int)] / 12)
            ph = 2 * np.pi * np.cumsum(f) / SR
            dec = np.exp(-8 * np.mod(t, 0.25))
            x = 0.2 * dec * (np.sin(ph) + 0.5 * np.sin(2 * ph) + 0.25 * np.sin(3 * ph))
        sf.write(d / f"s{i:03d}_{kind}.wav", np.asarray(x, np.float32), SR)


def run_job(audio: Path, out: Path, hop_s: float, model: str) -> float:
    from yamnet_beam.job.pipeline import run

    if (out / "manifest.json").exists():
        return float("nan")
    t0 = time.perf_counter()
    run(["--input", str(audio), "--output", str(out), "--hop_s", str(hop_s), "--model", model, "--part_files", "4"])
    return time.perf_counter() - t0


def exact_matrix(out: Path) -> tuple[list[tuple[str, int]], np.ndarray]:
    import pyarrow.parquet as pq

    from yamnet_beam.table.output import OutputDir

    rows, mats = [], []
    for p in OutputDir(str(out)).frame_files:
        t = pq.read_table(p, columns=["path", "frame", "embedding"])
        rows += list(zip(t.column("path").to_pylist(), t.column("frame").to_pylist(), strict=True))
        mats.append(np.stack(t.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32))
    m = np.concatenate(mats)
    return rows, m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def build_in_process(out: Path, shard_frames: int, precision: str) -> tuple[float, int, int]:
    """Every shard built here, one thread: (seconds, frames, bytes on disk)."""
    from yamnet_beam.index.covers import BuildParams, committed_parts, plan_groups, shard_name
    from yamnet_beam.index.shards import build_shard
    from yamnet_beam.job.index import _with_rows
    from yamnet_beam.table.output import OutputDir

    shutil.rmtree(out / "index", ignore_errors=True)
    o = OutputDir(str(out))
    parts = committed_parts(o)
    groups = plan_groups(parts, _with_rows(o, parts), shard_frames)
    params = BuildParams(precision)
    t0 = time.perf_counter()
    frames = sum(build_shard(str(out), shard_name(g, params), g, params).rows for g in groups)
    secs = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in (out / "index").iterdir())
    return secs, frames, size


def _rss() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile"):
            fields[k] = int(v.split()[0]) * 1024
    return fields


def query_child(spec: dict) -> dict:
    """In a fresh process: open the shards, run the queries one by one on one thread; latencies and memory."""
    os.environ["OMP_NUM_THREADS"] = "1"
    from yamnet_beam.index.covers import read_shards
    from yamnet_beam.index.search import open_shards, search
    from yamnet_beam.table.output import OutputDir

    base = _rss()
    o = OutputDir(spec["out"])
    shards = open_shards(o, read_shards(o) if spec.get("names") is None else spec["shards"], spec.get("ef"))
    queries = np.load(spec["queries"], mmap_mode="r")
    lat, results = [], []
    for q in queries:
        t0 = time.perf_counter()
        t = search(shards, np.asarray(q), 10, path_glob=spec.get("glob"))
        lat.append(time.perf_counter() - t0)
        results.append(list(zip(t.column("path").to_pylist(), t.column("frame").to_pylist(), strict=True)))
    end = _rss()
    return {"lat": lat, "results": results, "base": base, "end": end}


def spawn_query(spec: dict) -> dict:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(query_child, (spec,))


def recall(rows, m: np.ndarray, qi: np.ndarray, results: list, k: int = 10, tol: float = 1e-3) -> float:
    where = {r: j for j, r in enumerate(rows)}
    hits = 0
    for i, got in zip(qi, results, strict=True):
        sims = m @ m[i]
        kth = np.partition(sims, -k)[-k]
        hits += sum(sims[where[tuple(g)]] >= kth - tol for g in got)
    return hits / (k * len(qi))


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, p))


def exact_latency(m: np.ndarray, queries: np.ndarray) -> list[float]:
    """Today's exact search on the cache: one matrix-vector product over the unit vectors, then top-10."""
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        s = m @ q
        np.argpartition(-s, 10)[:10]
        lat.append(time.perf_counter() - t0)
    return lat


def bench_real(args) -> None:
    from yamnet_beam.index.search import EXPANSION_SEARCH

    audio, out = Path(args.dir) / "audio", Path(args.dir) / "out"
    make_audio(audio, REPO.parent / "shared" / "fixtures" / "audio" if not args.fixtures else Path(args.fixtures),
               args.files, args.seconds)  # fmt: skip
    job_s = run_job(audio, out, args.hop_s, args.model)
    rows, m = exact_matrix(out)
    log(f"\n(a) real YAMNet embeddings: {len(rows):,} frames of {args.files} synthesised files at hop {args.hop_s} s"
        + (f" (the job took {job_s:.0f} s)" if job_s == job_s else " (run reused)"))  # fmt: skip
    rng = np.random.default_rng(1)
    qi = rng.choice(len(rows), args.queries, replace=False)
    qfile = Path(args.dir) / "queries.npy"
    np.save(qfile, m[qi])
    header = (
        "| shards x frames | precision | build vectors/s/core | disk B/frame | p50 ms | p99 ms | recall@10 | "
        "anon RSS MB | mapped MB |"
    )
    log(header)
    log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for shard_frames in args.shard_frames:
        for precision in ("f16", "i8"):
            secs, frames, size = build_in_process(out, shard_frames, precision)
            for ef in [None] if (shard_frames, precision) != (args.shard_frames[0], "f16") else [64, None, 256]:
                r = spawn_query({"out": str(out), "queries": str(qfile), "ef": ef})
                n_sh = len(list((out / "index").glob("*.json")))
                rec = recall(rows, m, qi, r["results"])
                ef_note = f" ef={ef}" if ef else f" ef={EXPANSION_SEARCH} (default)"
                log(
                    f"| {n_sh} x ≤{shard_frames:,} | {precision}{ef_note} | {frames / secs:,.0f} | "
                    f"{size / frames:,.0f} | {pct(r['lat'], 50):.2f} | {pct(r['lat'], 99):.2f} | {rec:.3f} | "
                    f"{r['end']['RssAnon'] / 2**20:.0f} | {r['end']['RssFile'] / 2**20:.0f} |"
                )
    ex = []
    for _ in range(args.repeat):
        ex.append(pct(exact_latency(m, m[qi[:100]]), 50))
    log(f"exact search over the same {len(rows):,} unit float32 vectors (numpy, in memory): p50 "
        f"{statistics.median(ex):.1f} ms (range {min(ex):.1f}-{max(ex):.1f} over {args.repeat} repeats); "
        f"load {load()}")  # fmt: skip
    bench_workers(out, args.repeat)
    globbed(out, rows, m, qi, qfile)


def globbed(out: Path, rows, m: np.ndarray, qi: np.ndarray, qfile: Path) -> None:
    """--path: exact over the matching subset (few rows) vs over-fetch and filter (many rows)."""
    import fnmatch

    build_in_process(out, SHARD, "f16")
    for glob in ("*/s000_*", "*/s00[0-9]_*", "*_[0-3].wav"):
        keep = np.array([fnmatch.fnmatch(p, glob) for p, _ in rows])
        r = spawn_query({"out": str(out), "queries": str(qfile), "glob": glob})
        sub = [r_ for r_, k in zip(rows, keep, strict=True) if k]
        where = {x: j for j, x in enumerate(sub)}
        ms = m[keep]
        hits = 0
        for i, got in zip(qi, r["results"], strict=True):
            sims = ms @ m[i]
            kth = np.partition(sims, -10)[-10]
            hits += sum(sims[where[tuple(g)]] >= kth - 1e-3 for g in got)
        log(f"--path {glob!r} ({keep.mean():.1%} of rows match): p50 {pct(r['lat'], 50):.2f} ms, "
            f"p99 {pct(r['lat'], 99):.2f} ms, recall@10 {hits / (10 * len(qi)):.3f}")  # fmt: skip


def bench_workers(out: Path, repeat: int) -> None:
    """The ``index`` job, 2 workers vs 1 (DirectRunner multi_processing), interleaved."""
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeat):
        for workers in (1, 2):
            shutil.rmtree(out / "index", ignore_errors=True)
            cmd = [sys.executable, "-m", "yamnet_beam.cli", "index", str(out), "--shard_frames", "32768",
                   "--direct_running_mode", "multi_processing", "--direct_num_workers", str(workers)]  # fmt: skip
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[workers].append(time.perf_counter() - t0)
    m1, m2 = statistics.median(times[1]), statistics.median(times[2])
    log(
        f"index job, shards of 32,768 frames: 1 worker {m1:.1f} s ({min(times[1]):.1f}-{max(times[1]):.1f}), "
        f"2 workers {m2:.1f} s ({min(times[2]):.1f}-{max(times[2]):.1f}): {m1 / m2:.2f}x; load {load()}"
    )


# ---------------------------------------------------------------- (b) synthetic vectors


def synthetic_shard(d: Path) -> tuple[Path, float]:
    """One 262,144-frame f16 shard of synthetic non-negative vectors (like YAMNet's), built once."""
    import pyarrow as pa

    from yamnet_beam.index.covers import BuildParams, Shard, shard_file
    from yamnet_beam.index.shards import ROWS_SCHEMA, new_index, quantise, unit_rows
    from yamnet_beam.table.output import OutputDir, write_json

    o = OutputDir(str(d / "base"))
    done = Path(shard_file(o, "base", ".json"))
    if done.exists():
        return d / "base", float("nan")
    rng = np.random.default_rng(0)
    index = new_index(DIM, BuildParams())
    t0 = time.perf_counter()
    for start in range(0, SHARD, 16384):
        x = unit_rows(np.abs(rng.standard_normal((16384, DIM), dtype=np.float32)) ** 2)
        index.add(np.arange(start, start + 16384, dtype=np.uint64), quantise(x, "f16"), threads=1)
    secs = time.perf_counter() - t0
    (d / "base" / "index").mkdir(parents=True, exist_ok=True)
    index.save(shard_file(o, "base", ".usearch"))
    paths = pa.array([f"synthetic/{i // 1000:06d}.wav" for i in range(SHARD)]).dictionary_encode()
    frame = pa.array(np.arange(SHARD, dtype=np.int32) % 1000)
    start = frame.to_numpy() * 0.48
    labels = pa.array(["Speech"] * SHARD).dictionary_encode()
    t = pa.Table.from_arrays([paths, frame, pa.array(start), pa.array(start + 0.975), labels], schema=ROWS_SCHEMA)
    import pyarrow.ipc as ipc

    with ipc.new_file(shard_file(o, "base", ".rows.arrow"), ROWS_SCHEMA) as w:
        w.write_table(t, max_chunksize=SHARD)
    write_json(str(done), Shard("base", (("part-base.parquet", "x", SHARD),)).to_json())
    return d / "base", secs


def exact_1m(d: Path, rng: np.random.Generator) -> np.ndarray:
    """1 M unit float32 vectors, memory-mapped: today's exact search (the ``similar`` cache) at 1 M frames."""
    exact_path = d / "exact_1m.npy"
    if not exact_path.exists():
        mm = np.lib.format.open_memmap(exact_path, mode="w+", dtype=np.float32, shape=(1_000_000, DIM))
        for s in range(0, 1_000_000, 65536):
            x = np.abs(rng.standard_normal((min(65536, 1_000_000 - s), DIM), dtype=np.float32)) ** 2
            mm[s : s + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
        mm.flush()
        del mm
    return np.load(exact_path, mmap_mode="r")


def latency_table(args, d: Path, base: Path, base_name: str, shard_rows: int, queries: np.ndarray) -> None:
    """Query latency over hard-linked copies of one shard at about 1 M and 10 M frames, exact 1 M interleaved."""
    qfile = d / "queries.npy"
    np.save(qfile, queries)
    exact = exact_1m(d, np.random.default_rng(5))
    log("| frames | shards | ef | p50 ms (range) | p99 ms | anon RSS MB | mapped MB | exact p50 ms, 1 M (range) |")
    log("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for target in (1_000_000, 10_000_000):
        copies = -(-target // shard_rows)
        out, shards = linked(d, base, base_name, copies, shard_rows)
        for ef in args.ef:
            lats, ex, rss = [], [], None
            for _ in range(args.repeat):  # interleaved: index, then exact
                spec = {"out": str(out), "queries": str(qfile), "names": True, "shards": shards, "ef": ef}
                r = spawn_query(spec)
                lats.append(r["lat"])
                rss = r["end"]
                ex.append(pct(exact_latency(exact, queries[:10]), 50))
            p50s = [pct(x, 50) for x in lats]
            p99s = [pct(x, 99) for x in lats]
            log(
                f"| {copies * shard_rows / 1e6:.1f} M | {copies} | {ef} | "
                f"{statistics.median(p50s):.1f} ({min(p50s):.1f}-{max(p50s):.1f}) | {statistics.median(p99s):.1f} | "
                f"{rss['RssAnon'] / 2**20:.0f} | {rss['RssFile'] / 2**20:.0f} | "
                f"{statistics.median(ex):.0f} ({min(ex):.0f}-{max(ex):.0f}) |"
            )
    log(f"load {load()}")


def linked(d: Path, base: Path, base_name: str, copies: int, rows: int) -> tuple[Path, list]:
    from yamnet_beam.index.covers import Shard

    dest = d / f"{base_name}-x{copies}" / "index"
    dest.mkdir(parents=True, exist_ok=True)
    shards = []
    for i in range(copies):
        for suffix in (".usearch", ".rows.arrow"):
            p = dest / f"shard-c{i:03d}{suffix}"
            if not p.exists():
                os.link(base / "index" / f"shard-{base_name}{suffix}", p)
        shards.append(Shard(f"c{i:03d}", ((f"part-{i}.parquet", "x", rows),)))
    return dest.parent, shards


def bench_linked_real(args) -> None:
    """(b) with the real run's one shard (all its frames, f16) as the base: more, smaller shards than default."""
    from yamnet_beam.index.covers import read_shards
    from yamnet_beam.table.output import OutputDir

    out = Path(args.dir) / "out"
    current = read_shards(OutputDir(str(out)))
    if len(current) != 1 or current[0].params.precision != "f16":
        build_in_process(out, SHARD, "f16")
    (shard,) = read_shards(OutputDir(str(out)))
    log(f"\n(b) copies of the real run's one f16 shard ({shard.rows:,} frames): latency at 1 M and 10 M frames")
    _, m = exact_matrix(out)
    qi = np.random.default_rng(6).choice(len(m), args.queries // 2, replace=False)
    d = Path(args.dir) / "linked"
    d.mkdir(parents=True, exist_ok=True)
    latency_table(args, d, out, shard.name, shard.rows, m[qi])


def bench_synthetic(args) -> None:
    d = Path(args.dir) / "synthetic"
    d.mkdir(parents=True, exist_ok=True)
    base, secs = synthetic_shard(d)
    size = sum(p.stat().st_size for p in (base / "index").iterdir())
    log(f"\n(b) synthetic: one {SHARD:,}-frame f16 shard"
        + (f" built in {secs:.0f} s ({SHARD / secs:,.0f} vectors/s, one core)" if secs == secs else " (reused)")
        + f", {size / SHARD:,.0f} B/frame on disk")  # fmt: skip
    rng = np.random.default_rng(2)
    queries = np.abs(rng.standard_normal((args.queries // 2, DIM), dtype=np.float32)) ** 2
    latency_table(args, d, base, "base", SHARD, queries)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/index_bench")
    ap.add_argument(
        "--model", default=os.environ.get("YAMNET_BEAM_MODEL", str(REPO.parent / "shared/models/yamnet.tflite"))
    )
    ap.add_argument("--fixtures", help="the shared audio fixtures (default ../shared/fixtures/audio)")
    ap.add_argument("--files", type=int, default=70)
    ap.add_argument("--seconds", type=float, default=100.0)
    ap.add_argument("--hop_s", type=float, default=0.06)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--shard_frames", type=int, action="append")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--ef", type=int, action="append", help="(b): HNSW search candidates (default 64, 128, 256)")
    ap.add_argument("--skip_real", action="store_true")
    ap.add_argument("--skip_synthetic", action="store_true")
    ap.add_argument("--path_only", action="store_true", help="(a): only the --path measurements (run reused)")
    ap.add_argument("--linked_real", action="store_true", help="(b) over copies of the real run's shard instead")
    args = ap.parse_args()
    args.shard_frames = args.shard_frames or [32_768, SHARD]
    args.ef = args.ef or [64, 128, 256]
    import usearch

    log(f"{os.cpu_count()} cores, usearch {usearch.__version__}, numpy {np.__version__}; load {load()}")
    if args.path_only:
        out = Path(args.dir) / "out"
        rows, m = exact_matrix(out)
        qi = np.random.default_rng(1).choice(len(rows), args.queries, replace=False)
        globbed(out, rows, m, qi, Path(args.dir) / "queries.npy")
        if args.linked_real:
            bench_linked_real(args)
        return
    if not args.skip_real:
        bench_real(args)
    if args.linked_real:
        bench_linked_real(args)
    elif not args.skip_synthetic:
        bench_synthetic(args)


if __name__ == "__main__":
    main()
