#!/usr/bin/env python3
"""Benchmark: collections of short clips against long files of the same audio (issue 21).

One command (see benchmarks/README.md)::

    python3 benchmarks/clips_bench.py [--quick] [--repeats 3] [--baseline main] [--out FILE]

It synthesises (no downloads) into ``benchmarks/.cache/clips/`` N x 10 s clips as 16 kHz mono WAV and as
44.1 kHz stereo FLAC, N x 5 s clips (16 kHz WAV) and 4 x 10 min files (16 kHz WAV, and 44.1 kHz stereo
FLAC to compare the FLAC clips with files of their own format, whose decoding dominates), all cut from one
continuous signal, so every case holds the same audio. Then, in one run, each repeat runs every case in
a rotating order (interleaved, so the drift of a shared machine hits all alike):

- the pipeline with 1 worker (in-process) and with 2 (``multi_processing``), each on the whole set and on
  its first quarter: the rate is frames/s of the difference, so start-up and the last part's tail cancel;
- with ``--baseline REF``, the 1-worker runs again on that commit's code (``git archive``), for before/after;
- bare per-frame ``invoke()`` and the batched model alone, on 60 s of the same 16 kHz audio;
- the machine's 2-process capacity: two bare-invoke processes at once over one alone.

Ratios are taken within a repeat and reported as medians with their ranges, on wall and on CPU time. One
worker uses a second core for decoding and the model's front end, so its wall rate is not a one-core
figure: two workers are compared with the machine's capacity times the one-worker rate on wall time (the
issue's measure) and on CPU time (frames per core-second, what each of two workers can at best reach).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.corpus import speech_16k, synth_block
from bench.floor import BareInterpreter
from bench.model import measure_capacity
from bench.procs import REPO, Ctx, child_env, loadavg, machine_info, spawn, system_busy_s

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = HERE / ".cache"
DEFAULT_OUT = HERE / "results" / "clips.json"
SEED = 7
TARGET_CLIPS_VS_LONG = 0.95
TARGET_VS_BARE_INVOKE = 1.15
TARGET_CAPACITY_SHARE = 0.95
# name -> (seconds per file, rate, channels, container, extension)
KINDS = {
    "long_wav": (600.0, 16000, 1, "WAV", "wav"),
    "long_flac": (600.0, 44100, 2, "FLAC", "flac"),
    "clips10_wav": (10.0, 16000, 1, "WAV", "wav"),
    "clips10_flac": (10.0, 44100, 2, "FLAC", "flac"),
    "clips5_wav": (5.0, 16000, 1, "WAV", "wav"),
}
LABELS = {
    "long_wav": "10 min files, 16 kHz WAV",
    "long_flac": "10 min files, 44.1 kHz stereo FLAC",
    "clips10_wav": "10 s clips, 16 kHz WAV",
    "clips10_flac": "10 s clips, 44.1 kHz stereo FLAC",
    "clips5_wav": "5 s clips, 16 kHz WAV",
}


def make_corpus(cache: Path, clips: int, long_files: int, long_s: float, log: Callable[[str], None]) -> dict:
    """Writes the sets once (a ``.done`` marker says complete); returns name -> (whole set, its first quarter)."""
    import soundfile as sf

    sets: dict[str, tuple[str, str]] = {}
    for name, (seconds, rate, channels, container, ext) in KINDS.items():
        count = long_files if name.startswith("long_") else clips
        seconds = long_s if name.startswith("long_") else seconds
        folder = cache / "clips" / f"{name}_{count}x{seconds:g}s"
        marker = folder / ".done"
        paths = [folder / f"{name}_{i:05d}.{ext}" for i in range(count)]
        if not marker.exists():
            log(f"writing {count} x {seconds:g} s {container} {rate} Hz {channels} ch into {folder} ...")
            folder.mkdir(parents=True, exist_ok=True)
            per = int(seconds * rate)
            step = 30 * rate
            for i, path in enumerate(paths):  # consecutive pieces of one signal: the same audio in every set
                with sf.SoundFile(str(path), "w", rate, channels, format=container, subtype="PCM_16") as f:
                    for s in range(0, per, step):
                        f.write(synth_block(i * per + s, min(step, per - s), rate, channels, SEED))
            marker.write_text(str(count))
        small = folder.with_name(folder.name + "_quarter.txt")
        small.write_text("".join(f"{p}\n" for p in paths[: count // 4]))
        sets[name] = (str(folder), str(small))
    return sets


def export_baseline(ref: str, cache: Path) -> Path:
    """``ref``'s tree (code and benchmarks) in the cache, to run the same cases on the code before a change."""
    sha = subprocess.check_output(["git", "-C", str(REPO), "rev-parse", "--short", ref], text=True).strip()
    dest = cache / f"baseline-{sha}"
    if not (dest / "yamnet_beam").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", sha], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def _workers(n: int) -> list[str]:
    if n == 1:
        return ["--runner=DirectRunner", "--direct_num_workers=1"]
    return ["--runner=DirectRunner", "--direct_running_mode=multi_processing", f"--direct_num_workers={n}"]


def model_alone(model_path: Path, seconds: float) -> Callable[[], dict[str, tuple[float, float, int]]]:
    """Times bare per-frame invoke and the batched model (default B) once each: name -> (wall, CPU, frames)."""
    from yamnet_beam import framing
    from yamnet_beam.model import YamnetModel, read_model_bytes

    x = speech_16k(seconds, SEED)
    frames = framing.frame_signal(x)
    bare = BareInterpreter(model_path)
    model = YamnetModel(read_model_bytes(str(model_path)))
    bare.invoke_all(frames[:4])
    model.embed(x[:64000])

    def timed(fn: Callable[[], object]) -> tuple[float, float, int]:
        w, c = time.perf_counter(), time.thread_time()
        fn()
        return time.perf_counter() - w, time.thread_time() - c, len(frames)

    return lambda: {
        "bare per-frame invoke": timed(lambda: bare.invoke_all(frames)),
        "batched model": timed(lambda: model.embed(x)),
    }


def _rate(full: dict[str, Any], small: dict[str, Any]) -> dict[str, float]:
    """Frames/s of the difference between a whole-set run and a quarter-set run, on wall and on CPU time
    (NaN if the larger run was not slower: noise swamped the difference)."""
    frames = full["summary"]["frames"] - small["summary"]["frames"]
    wall, cpu = full["wall_s"] - small["wall_s"], full["process_cpu_s"] - small["process_cpu_s"]
    return {
        "frames": frames,
        "wall": frames / wall if wall > 0 else float("nan"),
        "cpu": frames / cpu if cpu > 0 else float("nan"),
        "wall_s": [full["wall_s"], small["wall_s"]],
        "cpu_s": [full["process_cpu_s"], small["process_cpu_s"]],
    }


def _own_cpu_s() -> float:
    """CPU seconds of this process and of every child it waited for (the pipeline runs and their workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    cache = Path(args.cache)
    shared = Path(os.environ.get("YAMNET_BEAM_SHARED", REPO))
    model = Path(args.model or shared / "models" / "yamnet.tflite")
    class_map = Path(args.class_map or model.with_name("yamnet_class_map.csv"))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    ctx = Ctx(cache, model, class_map, log, wait_budget_s=args.max_wait, script=HERE / "pipeline_bench.py")
    clips = args.clips or (200 if args.quick else 1000)
    long_s = 300.0 if args.quick else 600.0
    repeats = args.repeats or (1 if args.quick else 3)
    sets = make_corpus(cache, clips, 4, long_s, log)
    codes = {"new": (ctx, child_env())}
    if args.baseline:
        base = export_baseline(args.baseline, cache)
        codes["base"] = (
            Ctx(cache, model, class_map, log, script=base / "benchmarks" / "pipeline_bench.py"),
            child_env(base),
        )
    cases = [(code, name, w) for name in KINDS for w in (1, 2) for code in codes if code == "new" or w == 1]
    time_model = model_alone(model, 60.0)
    rows: list[dict[str, Any]] = []
    cores = os.cpu_count() or 1
    for r in range(repeats):
        rep: dict[str, Any] = {"repeat": r, "loadavg": [loadavg()], "rates": {}}
        busy0, cpu0, wall0 = system_busy_s(), _own_cpu_s(), time.perf_counter()
        order = cases[r % len(cases) :] + cases[: r % len(cases)]
        for i, (code, name, w) in enumerate(order):
            if i == len(order) // 2:  # the model alone mid-repeat, in this process
                rep["model"] = {k: {"wall": n / wa, "cpu": n / c} for k, (wa, c, n) in time_model().items()}
            c_ctx, env = codes[code]
            full_set, small_set = sets[name]
            runs = {}
            for size, inp in (("full", full_set), ("quarter", small_set)):
                spec = {"inputs": [inp], "extra": [*_workers(w), *args.pipeline_arg]}
                runs[size] = spawn(c_ctx, "pipeline", f"clips-{code}-{name}-{w}w-{size}", spec, env=env)
            key = f"{code}/{name}/{w}"
            rep["rates"][key] = {**_rate(runs["full"], runs["quarter"]), "loadavg": runs["full"]["loadavg_1m"]}
            log(
                f"  repeat {r + 1}/{repeats} {key}: {rep['rates'][key]['wall']:.0f} frames/s "
                f"({rep['rates'][key]['cpu']:.0f} on CPU), load {loadavg():.1f}"
            )
        rep["capacity"] = measure_capacity(ctx, 30.0, 1)["capacity"]
        rep["loadavg"].append(loadavg())
        rep["foreign_cpu_share"] = round(
            max(0.0, system_busy_s() - busy0 - (_own_cpu_s() - cpu0)) / ((time.perf_counter() - wall0) * cores), 3
        )
        rows.append(rep)
    return {
        "machine": machine_info(),
        "clips": clips,
        "long_s": long_s,
        "repeats": repeats,
        "baseline": args.baseline,
        "runs": rows,
        "bench_wall_s": round(time.perf_counter() - t_start, 1),
    }


def _med(values: Sequence[float], digits: int = 2) -> str:
    v = [float(x) for x in values if np.isfinite(x)]
    if not v:
        return "n/a"
    nan = f", {len(values) - len(v)} n/a" if len(v) < len(values) else ""
    return f"{np.median(v):.{digits}f} ({min(v):.{digits}f}-{max(v):.{digits}f}{nan})"


def _same_format_long(name: str) -> str:
    """The long files a set is compared with: those of its own format if the corpus has them."""
    ext = name.rsplit("_", 1)[-1]
    return f"long_{ext}" if f"long_{ext}" in KINDS else "long_wav"


def format_report(res: dict[str, Any]) -> str:
    m, runs = res["machine"], res["runs"]
    loads = [x for r in runs for x in r["loadavg"]]
    foreign = [r["foreign_cpu_share"] for r in runs]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem_gb']} GB; Python {m['python']}, Beam {m['apache_beam']}, "
        f"LiteRT {m['ai_edge_litert']}; load average {min(loads):.1f}-{max(loads):.1f}, "
        f"others' CPU {min(foreign):.0%}-{max(foreign):.0%} of the cores",
        f"{res['clips']} clips per clip set, 4 x {res['long_s']:g} s long files; rates from the whole set minus its "
        f"first quarter; {res['repeats']} interleaved repeats: median (min-max) of per-repeat values",
        "",
        "| case | 1 worker frames/s | on CPU | vs long files | on CPU | 2 workers frames/s | 2w / (1w x capacity) "
        "| 2w / (1w on CPU x capacity) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def per(key: str, what: str) -> list[float]:
        return [r["rates"][key][what] for r in runs]

    long1 = {w: per("new/long_wav/1", w) for w in ("wall", "cpu")}
    cap = [r["capacity"] for r in runs]
    for name in KINDS:
        one, two = per(f"new/{name}/1", "wall"), per(f"new/{name}/2", "wall")
        one_cpu = per(f"new/{name}/1", "cpu")
        ref = _same_format_long(name)
        long_ref = {w: per(f"new/{ref}/1", w) for w in ("wall", "cpu")}
        lines.append(
            f"| {LABELS[name]} | {_med(one, 0)} | {_med(one_cpu, 0)} | "
            f"{_med([a / b for a, b in zip(one, long_ref['wall'], strict=True)])} | "
            f"{_med([a / b for a, b in zip(one_cpu, long_ref['cpu'], strict=True)])} | {_med(two, 0)} | "
            f"{_med([t / (o * c) for t, o, c in zip(two, one, cap, strict=True)])} | "
            f"{_med([t / (o * c) for t, o, c in zip(two, one_cpu, cap, strict=True)])} |"
        )
    for k in ("bare per-frame invoke", "batched model"):
        w, c = [r["model"][k]["wall"] for r in runs], [r["model"][k]["cpu"] for r in runs]
        lines.append(f"| {k} (60 s, in the parent) | {_med(w, 0)} | {_med(c, 0)} | | | | |")
    bare = {w: [r["model"]["bare per-frame invoke"][w] for r in runs] for w in ("wall", "cpu")}
    batched = [r["model"]["batched model"]["wall"] / b for r, b in zip(runs, bare["wall"], strict=True)]
    lines += ["", f"2-process capacity (two bare-invoke processes at once over one): {_med(cap)}", ""]
    lines += ["| target | median (min-max) | met in every repeat |", "| --- | ---: | --- |"]

    def target(text: str, values: list[float], bound: float) -> None:
        met = all(np.isfinite(v) and v >= bound for v in values)
        lines.append(f"| {text} >= {bound} | {_med(values)} | {'yes' if met else 'no'} |")

    clip_long = [a / b for a, b in zip(per("new/clips10_wav/1", "wall"), long1["wall"], strict=True)]
    target("10 s clips (16 kHz WAV) vs long files, 1 worker, wall", clip_long, TARGET_CLIPS_VS_LONG)
    clip_long_cpu = [a / b for a, b in zip(per("new/clips10_wav/1", "cpu"), long1["cpu"], strict=True)]
    target("10 s clips (16 kHz WAV) vs long files, 1 worker, CPU", clip_long_cpu, TARGET_CLIPS_VS_LONG)
    target(
        "1 worker vs bare per-frame invoke, long files, wall",
        [a / b for a, b in zip(long1["wall"], bare["wall"], strict=True)],
        TARGET_VS_BARE_INVOKE,
    )
    target(
        "1 worker vs bare per-frame invoke, long files, CPU",
        [a / b for a, b in zip(long1["cpu"], bare["cpu"], strict=True)],
        TARGET_VS_BARE_INVOKE,
    )
    for name in ("long_wav", "clips10_wav"):
        two, one, one_cpu = per(f"new/{name}/2", "wall"), per(f"new/{name}/1", "wall"), per(f"new/{name}/1", "cpu")
        target(
            f"2 workers / (1 worker x capacity), {LABELS[name]}",
            [t / (o * c) for t, o, c in zip(two, one, cap, strict=True)],
            TARGET_CAPACITY_SHARE,
        )
        target(
            f"2 workers / (1 worker's CPU rate x capacity), {LABELS[name]}",
            [t / (o * c) for t, o, c in zip(two, one_cpu, cap, strict=True)],
            TARGET_CAPACITY_SHARE,
        )
    flac = [a / b for a, b in zip(per("new/clips10_flac/1", "wall"), per("new/long_flac/1", "wall"), strict=True)]
    target("10 s clips vs long files, both 44.1 kHz stereo FLAC, 1 worker, wall", flac, TARGET_CLIPS_VS_LONG)
    lines.append(f"\nBatched model alone vs bare per-frame invoke (wall): {_med(batched)}")
    if res.get("baseline"):
        lines += ["", f"1 worker, this code over `{res['baseline']}` (same run, interleaved):", ""]
        lines += ["| case | wall | CPU |", "| --- | ---: | ---: |"]
        for name in KINDS:
            w = [a / b for a, b in zip(per(f"new/{name}/1", "wall"), per(f"base/{name}/1", "wall"), strict=True)]
            c = [a / b for a, b in zip(per(f"new/{name}/1", "cpu"), per(f"base/{name}/1", "cpu"), strict=True)]
            lines.append(f"| {LABELS[name]} | {_med(w)} | {_med(c)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 clips per set, 5-minute long files, 1 repeat")
    ap.add_argument("--clips", type=int, default=0, help="clips per set (default 1000, --quick 200)")
    ap.add_argument("--repeats", type=int, default=0, help="interleaved repeats (default 3, --quick 1)")
    ap.add_argument("--baseline", default=None, help="also run the 1-worker cases on this commit's code (e.g. main)")
    ap.add_argument("--out", default=None, help=f"JSON results (default {DEFAULT_OUT.relative_to(REPO)})")
    ap.add_argument("--cache", default=str(DEFAULT_CACHE), help="corpus and scratch directory (git-ignored)")
    ap.add_argument("--max-wait", type=float, default=0.0, help="seconds in total to wait for a quiet machine")
    ap.add_argument("--model", default=None, help="YAMNet .tflite (default $YAMNET_BEAM_SHARED/models/yamnet.tflite)")
    ap.add_argument("--class_map", default=None, help="class map CSV (default beside the model)")
    ap.add_argument("--pipeline-arg", action="append", default=[], metavar="FLAG", help="extra flag for every run")
    args = ap.parse_args(argv)
    res = run_bench(args)
    out = Path(args.out or (Path(args.cache) / "clips_quick.json" if args.quick else DEFAULT_OUT))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    print(format_report(res))
    print(f"\nJSON: {out}  (benchmark wall {res['bench_wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
