"""The model alone: bare per-frame ``invoke()`` against the batched path, and the machine's parallel capacity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import speech_16k
from bench.floor import BareInterpreter
from bench.procs import CHILD_ENV, REPO, Ctx, loadavg, system_busy_s


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, this thread's CPU) seconds of ``fn()``."""
    w, c = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - w, time.thread_time() - c


def measure_model(model_path: Path, seconds: float, repeats: int) -> dict[str, Any]:
    """Frames/s of bare per-frame ``invoke()`` and of the batched path on one 16 kHz signal, interleaved.

    Each repeat times every case once, in rotating order, so drift on a shared machine hits all alike;
    ratios are taken within a repeat (case / its per-frame baseline), then the median is reported.
    Also: the CNN's last batch of a block of 21 frames (10 s) at the default B run at its own size
    (a resize before and after it) vs padded to B (no resize); :mod:`yamnet_beam.model.batched` does the first.
    """
    from yamnet_beam import framing
    from yamnet_beam.model import YamnetModel, read_model_bytes
    from yamnet_beam.model.batched import DEFAULT_BATCH, SubgraphRunner
    from yamnet_beam.model.split import build_models, find_split

    model_bytes = read_model_bytes(str(model_path))
    model = YamnetModel(model_bytes)
    if model.inference() != "batched":
        return {"inference": model.inference()}
    x = speech_16k(seconds)
    bare = BareInterpreter(model_path)
    hop, odd = framing.HOP_SAMPLES, 7681
    frames, odd_frames = framing.frame_signal(x), framing.frame_signal(x, odd)
    cnn = SubgraphRunner(build_models(model_bytes, find_split(model_bytes))[1], 1, "the CNN")
    cb, per_block = DEFAULT_BATCH, 21
    patches = np.random.default_rng(0).standard_normal((cb, 96, 64, 1)).astype(np.float32)
    tail = patches[: per_block % cb or cb].copy()
    padded = np.concatenate([tail, np.zeros((cb - len(tail), 96, 64, 1), np.float32)])
    blocks = max(1, len(frames) // per_block)

    def cnn_blocks(last: np.ndarray) -> None:
        for _ in range(blocks):
            for _ in range(per_block // cb):
                cnn(patches)
            cnn(last)

    cases: dict[str, tuple[Callable[[], object], int, str]] = {
        "per-frame invoke": (lambda: bare.invoke_all(frames), len(frames), "per-frame invoke"),
    }
    for b in (1, 4, 16, 64):
        cases[f"batched B={b}"] = (lambda b=b: model.embed(x, hop, b), len(frames), "per-frame invoke")
    cases["per-frame invoke hop=7681"] = (lambda: bare.invoke_all(odd_frames), len(odd_frames), "")
    cases["batched B=16 hop=7681"] = (lambda: model.embed(x, odd, 16), len(odd_frames), "per-frame invoke hop=7681")
    pad_case = f"CNN at B={cb}, {per_block} frames a block, last batch padded to {cb}"
    cases[pad_case] = (lambda: cnn_blocks(padded), per_block * blocks, "")
    cases[f"CNN at B={cb}, {per_block} frames a block, last batch at its size"] = (
        lambda: cnn_blocks(tail),
        per_block * blocks,
        pad_case,
    )
    for fn, _, _ in cases.values():
        fn()  # warm up: the first invokes pack weights
    names = list(cases)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    busy0, cpu0, wall0 = system_busy_s(), time.process_time(), time.perf_counter()
    for r in range(repeats):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            w, c = _timed(cases[n][0])
            wall[n].append(w)
            cpu[n].append(c)
    foreign = max(0.0, system_busy_s() - busy0 - (time.process_time() - cpu0))
    rows = []
    for n in names:
        _, count, base = cases[n]
        base = base or n
        ratio = [b / a for a, b in zip(wall[n], wall[base], strict=True)]
        cpu_ratio = [b / a for a, b in zip(cpu[n], cpu[base], strict=True)]
        rows.append(
            {
                "case": n,
                "baseline": base,
                "frames": count,
                "frames_per_s": round(count / float(np.median(wall[n])), 1),
                "cpu_frames_per_s": round(count / float(np.median(cpu[n])), 1),
                "ratio": round(float(np.median(ratio)), 3),
                "ratio_range": [round(min(ratio), 3), round(max(ratio), 3)],
                "cpu_ratio": round(float(np.median(cpu_ratio)), 3),
            }
        )
    share = foreign / ((time.perf_counter() - wall0) * (os.cpu_count() or 1))
    return {"inference": "batched", "seconds": seconds, "repeats": repeats, "rows": rows, "foreign_cpu_share": share}


def child_invoke(spec: dict[str, Any]) -> dict[str, Any]:
    """Bare per-frame invoke on ``seconds`` of audio, starting at ``start_at`` (so that children run at once)."""
    from yamnet_beam import framing

    frames = framing.frame_signal(speech_16k(spec["seconds"]))
    bare = BareInterpreter(Path(spec["model"]))
    bare.invoke_all(frames[:5])
    late = time.time() - spec["start_at"]
    if late < 0:
        time.sleep(-late)
    wall, cpu = _timed(lambda: bare.invoke_all(frames))
    return {"frames": len(frames), "wall_s": wall, "cpu_s": cpu, "late_s": max(0.0, late)}


def measure_capacity(ctx: Ctx, seconds: float, repeats: int) -> dict[str, Any]:
    """Frames/s of two bare-invoke processes at once over one alone (best of ``repeats`` each, alternated)."""
    runs = ctx.cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    best: dict[int, float] = {}
    all_runs: dict[str, list[dict[str, Any]]] = {"1": [], "2": []}  # str keys: the same after a JSON round trip
    for r in range(repeats):
        for n in (1, 2):
            ctx.wait_quiet()
            start_at = time.time() + 4.0  # imports and model load happen before
            procs = []
            for i in range(n):
                spec_path, res_path = runs / f"invoke-{n}-{i}.spec.json", runs / f"invoke-{n}-{i}.result.json"
                spec = {"kind": "invoke", "model": str(ctx.model), "seconds": seconds, "start_at": start_at}
                spec_path.write_text(json.dumps(spec))
                res_path.unlink(missing_ok=True)
                cmd = [sys.executable, str(ctx.script), "--_child", str(spec_path), str(res_path)]
                procs.append((subprocess.Popen(cmd, cwd=str(REPO), env=CHILD_ENV), res_path))
            for proc, _ in procs:
                if proc.wait() != 0:
                    raise RuntimeError(f"bare-invoke child failed (exit {proc.returncode})")
            res = [json.loads(p.read_text()) for _, p in procs]
            fps = sum(x["frames"] for x in res) / max(x["wall_s"] for x in res)
            all_runs[str(n)].append({"frames_per_s": round(fps, 1), "children": res, "loadavg_1m": loadavg()})
            best[n] = max(best.get(n, 0.0), fps)
        ctx.log(
            f"  capacity repeat {r + 1}/{repeats}: 1 process {all_runs['1'][-1]['frames_per_s']:.0f} frames/s, "
            f"2 at once {all_runs['2'][-1]['frames_per_s']:.0f}"
        )
    return {
        "seconds": seconds,
        "one_frames_per_s": round(best[1], 1),
        "two_frames_per_s": round(best[2], 1),
        "capacity": round(best[2] / best[1], 3),
        "runs": all_runs,
    }
