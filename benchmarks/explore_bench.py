"""How fast is the explorer's loop on a large output? Prints timings (median and range over repeats, with the
load average); asserts nothing.

Writes a synthetic output under ``--dir``: ``--rows`` frames (default 1,000,000) in files of 500 frames
(4 minutes at the 0.48 s hop), float16 embeddings with a "target" cluster in 10% of the frames whose
"Beep, bleep" score is raised, real 16 kHz WAVs for the first ``--audio_files`` files (the page is drawn
from those), a manifest with a model SHA-256 (``train`` needs one). Then, through
:class:`yamnet_beam.explore.session.Explorer` (what the web handlers call):

1. class search: the first page of 20 windows ranked by one class's score (DuckDB over frames/);
2. example search: the 20 nearest windows to a stored frame (``similar``: the index when the output has
   one, else exact search over the memory-mapped cache; the cache's one-off build is timed apart);
3. a page of 20 windows: each window's spectrogram PNG and WAV clip, cold (decoding each file) and warm;
4. train + re-rank on 200 labels (100 positive, 100 negative windows): ``train`` (5-fold CV grouped by
   file, then the fit), then scoring every frame with the head; the frame matrix's one-off load timed apart.

Usage: ``python benchmarks/explore_bench.py [--rows 1000000] [--dir /tmp/explore_bench] [--repeat 3]``
(about 5 GB of disk and 3 GB of memory for 1M rows; the data is reused between runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from yamnet_beam import framing
from yamnet_beam.model.labels import load_class_map
from yamnet_beam.table import schema
from yamnet_beam.table.layout import FILES_DIR, FRAMES_DIR, LABELS_CSV, MANIFEST

PER_FILE = 500
TARGET = "Beep, bleep"
DEFAULT_SHARED = Path(os.environ.get("YAMNET_BEAM_SHARED", "/work/shared"))


def _file_frames(rng, i: int, names, target_idx: int, audio_dir: Path):
    path = str(audio_dir / f"rec_{i:05d}.wav")
    target = rng.random(PER_FILE) < 0.1
    emb = np.abs(rng.standard_normal((PER_FILE, 1024), dtype=np.float32))
    emb[target, :64] += 1.5  # the target sound's cluster
    scores = rng.dirichlet(np.full(len(names), 0.05), PER_FILE).astype(np.float32)
    scores[:, target_idx] = np.clip(0.3 * target + 0.5 * rng.random(PER_FILE), 0, 1)  # a noisy class score
    start, end = framing.frame_times(0, PER_FILE, framing.HOP_SAMPLES)
    valid = np.full(PER_FILE, framing.WINDOW_SAMPLES, np.int32)
    return path, target, schema.frames_table(FRAMES_SCHEMA, path, 0, start, end, valid, scores, emb, names)


FRAMES_SCHEMA = schema.frames_schema(embedding_dtype="float16", metadata={"model_sha256": "0" * 64})


def make_output(dest: Path, rows: int, audio_files: int, class_map: Path) -> dict:
    truth_file = dest / "truth.npz"
    if truth_file.exists() and np.load(truth_file)["rows"] == rows:
        return dict(np.load(truth_file, allow_pickle=False))
    shutil.rmtree(dest, ignore_errors=True)
    out, audio = dest / "out", dest / "audio"
    for d in (out / FRAMES_DIR, out / FILES_DIR, audio):
        d.mkdir(parents=True, exist_ok=True)
    shutil.copy(class_map, out / LABELS_CSV)
    names = list(load_class_map(str(class_map)).names)
    target_idx = names.index(TARGET)
    rng = np.random.default_rng(0)
    n_files = rows // PER_FILE
    duration = framing.frame_times(0, PER_FILE, framing.HOP_SAMPLES)[0][-1] + framing.WINDOW_SECONDS
    t0 = time.perf_counter()
    targets, file_rows = [], []
    per_part = 200  # files per part
    for part in range(0, n_files, per_part):
        pid = f"{part // per_part:05d}"
        tables = []
        for i in range(part, min(part + per_part, n_files)):
            path, target, t = _file_frames(rng, i, names, target_idx, audio)
            tables.append(t)
            targets.append(target)
            file_rows.append(schema.file_row(path, status="ok", frames=PER_FILE, duration_s=duration,
                                             fingerprint="fp", part=pid))  # fmt: skip
        pq.write_table(pa.concat_tables(tables), out / FRAMES_DIR / f"part-{pid}.parquet", compression="zstd",
                       compression_level=1, row_group_size=4096)  # fmt: skip
        mine = [r for r in file_rows if r["part"] == pid]
        pq.write_table(schema.files_table(mine), out / FILES_DIR / f"part-{pid}.parquet")
    for i in range(min(audio_files, n_files)):
        x = 0.1 * rng.standard_normal(int(duration * framing.SAMPLE_RATE)).astype(np.float32)
        sf.write(audio / f"rec_{i:05d}.wav", x, framing.SAMPLE_RATE, subtype="PCM_16")
    (out / MANIFEST).write_text(json.dumps({"model_sha256": "0" * 64}))
    truth = {"rows": rows, "target": np.concatenate(targets)}
    np.savez(truth_file, **truth)
    print(f"  wrote {rows:,} frames in {n_files} files to {out} in {time.perf_counter() - t0:.0f} s")
    return truth


def _time(fn, repeat: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def _row(name: str, times: list[float]) -> str:
    med = statistics.median(times)
    return f"| {name} | {med:.3f} | {min(times):.3f}–{max(times):.3f} | {len(times)} | {med / 1.0:.2f} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/tmp/explore_bench")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--audio_files", type=int, default=20)
    ap.add_argument("--class_map", default=str(DEFAULT_SHARED / "models" / "yamnet_class_map.csv"))
    args = ap.parse_args()
    from yamnet_beam.explore.session import Explorer

    dest = Path(args.dir)
    truth = make_output(dest, args.rows, args.audio_files, Path(args.class_map))
    out = dest / "out"
    shutil.rmtree(out / "labels", ignore_errors=True)
    rows = []
    (t_open,), ex = _time(lambda: Explorer(str(out), preload=False), 1)
    rows.append(_row("open the output (startup)", [t_open]))
    (t_matrix,), _ = _time(ex.matrix, 1)
    matrix = ex._matrix
    rows.append(_row("frame matrix load (once per session, in the background)", [t_matrix]))
    sql_times, mem_times = [], []
    for _ in range(args.repeat):  # interleaved: DuckDB over frames/ (the baseline) and the in-memory matrix
        ex._matrix = None
        sql_times += _time(lambda: ex.search_class(TARGET), 1)[0]
        ex._matrix = matrix
        mem_times += _time(lambda: ex.search_class(TARGET), 1)[0]
    rows.append(_row(f"class search, first page of 20 ({TARGET}): DuckDB over frames/", sql_times))
    rows.append(_row(f"class search, first page of 20 ({TARGET}): in-memory matrix", mem_times))
    ratio = statistics.median(sql_times) / statistics.median(mem_times)
    audio_paths = [str(dest / "audio" / f"rec_{i:05d}.wav") for i in range(args.audio_files)]
    spec = f"{audio_paths[0]}:7"
    from yamnet_beam.analysis import similar as sim

    (t_cache,), _ = _time(lambda: sim.build_similarity_cache(ex.out), 1)
    rows.append(_row("example search: similarity cache build (once per output)", [t_cache]))
    times, res = _time(lambda: ex.search_example(spec), args.repeat)
    rows.append(_row(f"example search, first page of 20 ({res['method']})", times))
    windows = [(p, 10.0 * k, 10.0 * k + 0.975) for k, p in enumerate(audio_paths[:20])]

    def render_page():
        for p, a, b in windows:
            ex.spectrogram(p, a, b)
            ex.audio(p, a, b)

    (t_cold,), _ = _time(render_page, 1)
    rows.append(_row("page of 20 windows: spectrogram + WAV, cold (decodes 20 files)", [t_cold]))
    times, _ = _time(render_page, args.repeat)
    rows.append(_row("page of 20 windows: spectrogram + WAV, warm", times))
    # 200 labels: 100 target and 100 other frames, from many files
    rng = np.random.default_rng(1)
    target = truth["target"]
    pos = rng.choice(np.flatnonzero(target), 100, replace=False)
    neg = rng.choice(np.flatnonzero(~target), 100, replace=False)
    hop = framing.HOP_SAMPLES / framing.SAMPLE_RATE
    for i, lab in [(i, "positive") for i in pos] + [(i, "negative") for i in neg]:
        f, k = divmod(int(i), PER_FILE)
        ex.add_label(str(dest / "audio" / f"rec_{f:05d}.wav"), k * hop, k * hop + 0.975, "beep", lab)

    def train_rerank():
        ex.start_training("beep")
        while ex.job["state"] == "running":
            time.sleep(0.01)
        assert ex.job["state"] == "done", ex.job
        return ex.reranked()

    times, rr = _time(train_rerank, args.repeat)
    rows.append(_row("train (5-fold CV + fit) + re-rank every frame, 200 labels", times))
    m = ex.matrix()
    top = rr["items"][:20]
    idx = [int(np.flatnonzero((m.paths == x["path"]) & (m.frames == x["frame"]))[0]) for x in top]
    prec = float(np.mean([target[i] for i in idx]))
    load = os.getloadavg()
    print(f"\nexplore_bench: {args.rows:,} frames, {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}; seconds, median and range over repeats; ratio = median / the 1 s target")  # fmt: skip
    print("| step | median s | range s | n | ratio to 1 s |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(f"class search: DuckDB / in-memory median = {ratio:.1f}x")
    print(f"re-ranked precision@20 for the target cluster: {prec:.2f} (base rate 0.10)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
