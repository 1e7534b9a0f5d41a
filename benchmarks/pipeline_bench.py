#!/usr/bin/env python3
"""Benchmark: the yamnet-beam pipeline against the floor of its irreducible work (issue 4).

One command (see benchmarks/README.md)::

    python3 benchmarks/pipeline_bench.py [--quick] [--out benchmarks/results/latest.json]

It synthesises its own corpus (deterministic, no downloads) into ``benchmarks/.cache/``, then in one
run measures (a) the floor: best standalone single-core cost of block decoding (libsndfile), downmix,
resampling (soxr) and bare ``invoke()`` on pre-framed 16 kHz frames; (b) the pipeline end to end on
the DirectRunner with 1 worker (in-process) and 2 workers (multi_processing), with the fixed start-up
measured on a tiny file and subtracted; (c) a naive plain-Python loop; (d) peak RSS per worker on a
2-hour and a 10-minute file; (e) output bytes per audio hour with float32 and float16 embeddings;
(f) the model alone: bare per-frame ``invoke()`` vs the batched path (shared STFT rows, CNN at batch
B = 1, 4, 16, 64); (g) the machine's parallel capacity: two bare-invoke processes at once vs one.

The pipeline is a black box: every pipeline run happens in a fresh subprocess (this file re-invoked
with ``--_child``) that calls ``yamnet_beam.job.pipeline.run(argv)`` and reads Beam metrics from the
PipelineResult, so RSS, caches and imports are those of a real run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Measure the checkout this file is in, not whichever yamnet_beam is installed: first on this process's
# path, and on PYTHONPATH for every child (Beam's worker processes included).
sys.path.insert(0, str(REPO))
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
DEFAULT_CACHE = HERE / ".cache"
DEFAULT_OUT = HERE / "results" / "latest.json"
GENERATOR_VERSION = 1  # bump when the signal or the corpus layout changes, to regenerate the cache
TARGET_RATE = 16000
WRITE_CHUNK = 65536  # libsndfile's Vorbis encoder segfaults on very large single writes

# Targets of issue 4 and issue 12.
TARGET_FLOOR_RATIO = 0.85
TARGET_VS_BARE_INVOKE = 1.15  # 1 worker's frames/s over bare per-frame invoke's, same run
TARGET_CAPACITY_SHARE = 0.9  # 2 workers' speedup over 1, as a share of two bare-invoke processes' over one
TARGET_RSS_MB = 300.0
TARGET_RSS_GROWTH = 0.10

_FORMATS = {  # container -> (soundfile format, subtype, extension)
    "WAV": ("WAV", "PCM_16", "wav"),
    "FLAC": ("FLAC", "PCM_16", "flac"),
    "MP3": ("MP3", "MPEG_LAYER_III", "mp3"),
    "OGG": ("OGG", "VORBIS", "ogg"),
}


# ------------------------------------------------------------------------------------------------
# Corpus


@dataclasses.dataclass(frozen=True)
class AudioSpec:
    """One synthetic file: enough to regenerate it bit for bit."""

    name: str
    container: str
    rate: int
    channels: int
    seconds: float
    seed: int

    @property
    def filename(self) -> str:
        return f"{self.name}.{_FORMATS[self.container][2]}"


@dataclasses.dataclass(frozen=True)
class Corpus:
    mixed: list[AudioSpec]
    long: AudioSpec
    short: AudioSpec
    tiny: AudioSpec

    def all(self) -> list[AudioSpec]:
        return [*self.mixed, self.long, self.short, self.tiny]


def corpus_specs(quick: bool) -> Corpus:
    """Mixed corpus: every container x {16, 44.1, 48} kHz x {mono, stereo}, 60-120 s each (>= 30 min).

    The long file is FLAC 44.1 kHz stereo (not WAV 16 kHz) on purpose: it takes every stage (FLAC
    decode, downmix, resampling), and a whole-file decode would need 2.5 GB of float32, so any
    buffering that grows with file length shows up plainly in RSS.
    """
    combos = [(c, r, ch) for c in _FORMATS for r in (16000, 44100, 48000) for ch in (1, 2)]
    if quick:
        combos = [c for i, c in enumerate(combos) if (i // 2 + i) % 2 == 0]  # 12 files, mono and stereo
        mixed = [
            AudioSpec(f"quick_{i:02d}_{c.lower()}_{r}_{ch}ch", c, r, ch, 25.0 + (i * 7) % 11, 100 + i)
            for i, (c, r, ch) in enumerate(combos)
        ]
        long_s, short_s = 180.0, 60.0
    else:
        mixed = [
            AudioSpec(f"mixed_{i:02d}_{c.lower()}_{r}_{ch}ch", c, r, ch, 60.0 + (i * 37) % 61, 100 + i)
            for i, (c, r, ch) in enumerate(combos)
        ]
        long_s, short_s = 7200.0, 600.0
    return Corpus(
        mixed=mixed,
        long=AudioSpec(f"long_{int(long_s)}s_flac_44100_2ch", "FLAC", 44100, 2, long_s, 7),
        short=AudioSpec(f"long_{int(short_s)}s_flac_44100_2ch", "FLAC", 44100, 2, short_s, 7),
        tiny=AudioSpec("tiny_1s_wav_16000_1ch", "WAV", 16000, 1, 1.0, 1),
    )


def synth_block(start: int, n: int, rate: int, channels: int, seed: int) -> np.ndarray:
    """Samples ``[start, start+n)`` of a deterministic speech-like signal, ``(n, channels)`` float32.

    Syllable-rate envelope over a gliding harmonic "voice", a chirp every 7 s, noise bursts between
    syllables and a low noise floor: enough structure for realistic compression and model work.
    Depends only on the absolute sample index, so any block size gives the same signal.
    """
    t = np.arange(start, start + n, dtype=np.float64) / rate
    env = np.maximum(0.0, np.sin(2 * np.pi * 3.7 * t + seed)) ** 2 * (0.55 + 0.45 * np.sin(2 * np.pi * 0.23 * t))
    phase = 2 * np.pi * (140 * t - 40 / np.pi * np.cos(np.pi * t + seed))  # f0 = 140 + 40 sin(pi t)
    s = np.sin(phase)
    c = np.cos(phase)
    s2 = 2 * s * c  # sin 2x
    s3 = s * (3 - 4 * s * s)  # sin 3x
    voiced = s + 0.5 * s2 + 0.33 * s3
    tc = np.mod(t + 0.37 * seed, 7.0)
    chirp = np.where(tc < 1.0, np.sin(2 * np.pi * (500 * tc + 1750 * tc * tc)), 0.0)
    rng = np.random.default_rng([seed, start])
    noise = rng.standard_normal((n, channels)).astype(np.float32) * np.float32(0.004)
    bursts = (1 - env) * (np.sin(2 * np.pi * 0.9 * t) > 0.6)
    x = (0.25 * env * voiced + 0.12 * chirp).astype(np.float32)
    x += (0.2 * bursts).astype(np.float32) * noise[:, 0] * np.float32(10)
    out = np.empty((n, channels), np.float32)
    out[:, 0] = x + noise[:, 0]
    for ch in range(1, channels):
        out[:, ch] = np.float32(0.8) * x + noise[:, ch]
    return out


def write_audio(spec: AudioSpec, path: Path) -> None:
    """Writes ``spec`` to ``path`` block by block (memory stays flat even for the 2-hour file)."""
    fmt, subtype, _ = _FORMATS[spec.container]
    import soundfile as sf

    total = int(round(spec.seconds * spec.rate))
    block = 30 * spec.rate
    tmp = path.with_name(path.name + ".tmp")
    with sf.SoundFile(str(tmp), "w", spec.rate, spec.channels, format=fmt, subtype=subtype) as f:
        for start in range(0, total, block):
            x = synth_block(start, min(block, total - start), spec.rate, spec.channels, spec.seed)
            for i in range(0, len(x), WRITE_CHUNK):
                f.write(x[i : i + WRITE_CHUNK])
    tmp.replace(path)
    _key_path(path).write_text(_spec_key(spec))


def _key_path(path: Path) -> Path:
    return path.with_name(path.name + ".key")


def _spec_key(spec: AudioSpec) -> str:
    blob = json.dumps([GENERATOR_VERSION, dataclasses.asdict(spec)], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def ensure_corpus(corpus: Corpus, cache: Path, log: Callable[[str], None]) -> dict[str, Path]:
    """Generates missing or stale files (2 processes); returns spec name -> path.

    Each file has a ``.key`` sidecar (hash of its spec and the generator version), written after the file.
    """
    audio_dir = cache / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)

    def fresh(s: AudioSpec) -> bool:
        key = _key_path(audio_dir / s.filename)
        return (audio_dir / s.filename).exists() and key.exists() and key.read_text() == _spec_key(s)

    todo = [s for s in corpus.all() if not fresh(s)]
    if todo:
        secs = sum(s.seconds for s in todo)
        log(f"generating {len(todo)} corpus files ({secs / 60:.0f} min of audio) into {audio_dir} ...")
        t0 = time.perf_counter()
        todo.sort(key=lambda s: -s.seconds * s.rate * s.channels)
        with ProcessPoolExecutor(max_workers=2) as ex:
            list(ex.map(write_audio, todo, [audio_dir / s.filename for s in todo]))
        log(f"  done in {time.perf_counter() - t0:.0f} s")
    return {s.name: audio_dir / s.filename for s in corpus.all()}


# ------------------------------------------------------------------------------------------------
# Floor: the best standalone cost of each irreducible stage, one core


def _downmix_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Channel mean of an ``(n, channels)`` float32 block into ``out[:n]`` with pairwise adds (no temporaries)."""
    n, channels = x.shape
    o = out[:n]
    if channels == 1:
        o[:] = x[:, 0]
        return o
    np.add(x[:, 0], x[:, 1], out=o)
    for c in range(2, channels):
        np.add(o, x[:, c], out=o)
    o *= np.float32(1.0 / channels)
    return o


def _mono_blocks(path: Path, block: int, timing: dict[str, float] | None = None) -> Iterator[np.ndarray]:
    """Decodes with ``SoundFile.read(n, out=buf)`` and downmixes into a reused buffer; yields views of it.

    With ``timing``, adds this thread's CPU seconds of decoding and of downmixing to it: CPU time, not
    wall time, so that the floor does not absorb other processes' load on a shared machine.
    """
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        buf = np.empty((block, f.channels), np.float32)
        mono = np.empty(block, np.float32)
        while True:
            t0 = time.thread_time()
            x = f.read(block, dtype="float32", always_2d=True, out=buf)
            t1 = time.thread_time()
            if not len(x):
                return
            m = _downmix_into(x, mono)
            if timing is not None:
                timing["decode_s"] += t1 - t0
                timing["downmix_s"] += time.thread_time() - t1
            yield m


def _resample_stream(path: Path, rate: int, block: int, keep: bool) -> tuple[float, np.ndarray | None, int]:
    """soxr HQ ``ResampleStream`` over the file's mono blocks; CPU s of the resampler only, output if ``keep``."""
    import soxr

    rs = soxr.ResampleStream(rate, TARGET_RATE, 1, dtype="float32", quality="HQ")
    outs: list[np.ndarray] = []
    spent, n = 0.0, 0
    for m in _mono_blocks(path, block):
        n += len(m)
        t0 = time.thread_time()
        y = rs.resample_chunk(m, last=False)
        spent += time.thread_time() - t0
        if keep:
            outs.append(y)
    t0 = time.thread_time()
    y = rs.resample_chunk(np.zeros(0, np.float32), last=True)
    spent += time.thread_time() - t0
    outs.append(y)
    return spent, (np.concatenate(outs) if keep else None), n


class BareInterpreter:
    """The real model on a bare LiteRT interpreter (embedding exposed), 1 thread, default XNNPACK."""

    def __init__(self, model_path: Path):
        from ai_edge_litert.interpreter import Interpreter

        from yamnet_beam.model import expose_embedding, read_model_bytes

        self.interp = Interpreter(model_content=expose_embedding(read_model_bytes(str(model_path))), num_threads=1)
        self.interp.allocate_tensors()
        self.input_index = self.interp.get_input_details()[0]["index"]

    def invoke_all(self, frames: np.ndarray) -> float:
        """CPU seconds to copy each frame into the input tensor and ``invoke()`` (outputs not read)."""
        view = self.interp.tensor(self.input_index)
        invoke = self.interp.invoke
        t0 = time.thread_time()
        for f in frames:
            view()[0] = f
            invoke()
        return time.thread_time() - t0


def measure_floor(paths: Sequence[Path], model_path: Path, repeats: int, invoke: bool = True) -> dict[str, Any]:
    """Per stage, the sum over ``paths`` of each file's best standalone CPU time on one thread.

    Thread CPU time equals wall time on an idle core (everything here is single-threaded, and LiteRT runs
    with num_threads=1 on the calling thread); unlike wall time it does not grow when other processes
    share the machine.
    """
    import soundfile as sf
    import soxr

    from yamnet_beam import framing
    from yamnet_beam.model import YamnetModel

    bare = BareInterpreter(model_path) if invoke else None
    model = YamnetModel.from_uri(str(model_path), num_threads=1) if invoke else None
    if bare is not None:  # warm up XNNPACK packing and caches
        bare.invoke_all(np.zeros((5, framing.WINDOW_SAMPLES), np.float32))
        model.predict(np.zeros((5, framing.WINDOW_SAMPLES), np.float32))
    tot = dict(decode_s=0.0, downmix_s=0.0, resample_s=0.0, invoke_s=0.0, predict_s=0.0)
    audio_s = 0.0
    frames = 0
    methods: dict[str, int] = {}
    cpu0, busy0, wall0 = time.process_time(), _system_busy_s(), time.perf_counter()
    for path in paths:
        rate = sf.info(str(path)).samplerate
        best: dict[str, float] = {}
        for _ in range(repeats):
            for block in (int(rate * 10), 65536):  # 10-s blocks (as the pipeline) and 64k frames
                t = {"decode_s": 0.0, "downmix_s": 0.0}
                for _m in _mono_blocks(path, block, t):
                    pass
                for k, v in t.items():
                    best[k] = min(best.get(k, v), v)
        tot["decode_s"] += best["decode_s"]
        tot["downmix_s"] += best["downmix_s"]
        block = int(rate * 10)
        if rate == TARGET_RATE:
            y = np.concatenate([m.copy() for m in _mono_blocks(path, block)]) if invoke else None
            n_src = sum(len(m) for m in _mono_blocks(path, block)) if not invoke else len(y)
            rs_s, method = 0.0, "none"
        else:
            rs_s, y, n_src = _resample_stream(path, rate, block, keep=invoke)
            method = "stream"
            for _ in range(repeats - 1):
                rs_s = min(rs_s, _resample_stream(path, rate, block, keep=False)[0])
            if n_src <= rate * 1800:  # whole-array soxr for files up to 30 min (needs the whole signal in memory)
                whole = np.concatenate([m.copy() for m in _mono_blocks(path, block)])
                for _ in range(repeats):
                    t0 = time.thread_time()
                    yw = soxr.resample(whole, rate, TARGET_RATE, quality="HQ")
                    dt = time.thread_time() - t0
                    if dt < rs_s:
                        rs_s, method = dt, "whole"
                del whole, yw
        methods[method] = methods.get(method, 0) + 1
        tot["resample_s"] += rs_s
        audio_s += n_src / rate
        if bare is not None:
            fr = framing.frame_signal(y)
            del y
            frames += len(fr)
            tot["invoke_s"] += min(bare.invoke_all(fr) for _ in range(repeats))
            t0 = time.thread_time()
            for i in range(0, len(fr), 256):
                model.predict(fr[i : i + 256])
            tot["predict_s"] += time.thread_time() - t0
            del fr
        else:
            frames += framing.num_frames(int(np.ceil(n_src * TARGET_RATE / rate)))
    cpu, busy = time.process_time() - cpu0, _system_busy_s() - busy0
    out: dict[str, Any] = {k: round(v, 4) for k, v in tot.items()}
    out.update(audio_s=round(audio_s, 3), frames=frames, files=len(paths), resample_methods=methods)
    out["foreign_cpu_s"] = round(max(0.0, busy - cpu), 2)
    out["measure_wall_s"] = round(time.perf_counter() - wall0, 2)
    if invoke:
        out["invoke_ms_per_frame"] = round(1000 * tot["invoke_s"] / frames, 4)
        out["predict_ms_per_frame"] = round(1000 * tot["predict_s"] / frames, 4)
    return out


def floor_total(f: dict[str, Any], invoke_s: float | None = None) -> float:
    inv = f["invoke_s"] if invoke_s is None else invoke_s
    return f["decode_s"] + f["downmix_s"] + f["resample_s"] + inv


# ------------------------------------------------------------------------------------------------
# (f) The model alone: per-frame invoke vs the batched path; (g) the machine's 2-process capacity


def _speech_16k(seconds: float, seed: int = 3) -> np.ndarray:
    return np.ascontiguousarray(synth_block(0, int(seconds * TARGET_RATE), TARGET_RATE, 1, seed)[:, 0])


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
    x = _speech_16k(seconds)
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
    busy0, cpu0, wall0 = _system_busy_s(), time.process_time(), time.perf_counter()
    for r in range(repeats):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            w, c = _timed(cases[n][0])
            wall[n].append(w)
            cpu[n].append(c)
    foreign = max(0.0, _system_busy_s() - busy0 - (time.process_time() - cpu0))
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

    frames = framing.frame_signal(_speech_16k(spec["seconds"]))
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
                cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", str(spec_path), str(res_path)]
                procs.append((subprocess.Popen(cmd, cwd=str(REPO), env=CHILD_ENV), res_path))
            for proc, _ in procs:
                if proc.wait() != 0:
                    raise RuntimeError(f"bare-invoke child failed (exit {proc.returncode})")
            res = [json.loads(p.read_text()) for _, p in procs]
            fps = sum(x["frames"] for x in res) / max(x["wall_s"] for x in res)
            all_runs[str(n)].append({"frames_per_s": round(fps, 1), "children": res, "loadavg_1m": _loadavg()})
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


# ------------------------------------------------------------------------------------------------
# Child process: one pipeline run (or the naive loop), with RSS sampled from /proc


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """Polls VmHWM (peak RSS) of this process and every descendant; a high-water mark needs no fast polling."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peaks: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        me = os.getpid()
        for pid in [me, *_descendants(me)]:
            hwm = _status_kb(pid, "VmHWM")
            if hwm is None:
                continue
            entry = self.peaks.get(pid)
            if entry is None:
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
                except OSError:
                    cmd = ""
                entry = self.peaks[pid] = {"pid": pid, "self": pid == me, "cmd": cmd, "peak_mb": 0.0}
            entry["peak_mb"] = max(entry["peak_mb"], hwm / 1024)
            with contextlib.suppress(OSError, IndexError, ValueError):
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                entry["cpu_s"] = round((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"), 2)  # utime + stime

    def report(self) -> dict[str, Any]:
        procs = sorted(self.peaks.values(), key=lambda e: -e["peak_mb"])
        # Beam's SDK workers are Python processes running sdk_worker_main; `sh -c` wrappers are tiny.
        workers = [p for p in procs if not p["self"] and "sdk_worker" in p["cmd"]]
        return {
            "driver_peak_mb": round(next(p["peak_mb"] for p in procs if p["self"]), 1),
            "worker_peaks_mb": [round(p["peak_mb"], 1) for p in workers],
            # CPU seconds per SDK worker as last sampled: shows whether the work was spread over the workers.
            "worker_cpu_s": [p.get("cpu_s") for p in workers],
            "children_ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "processes": [{**p, "peak_mb": round(p["peak_mb"], 1)} for p in procs[:8]],
        }


def _metrics(result: Any) -> dict[str, Any]:
    """Counters and distributions of the yamnet_beam namespace, summed over steps (committed, else attempted)."""
    out: dict[str, Any] = {"counters": {}, "distributions": {}}
    try:
        q = result.metrics().query()
    except Exception as e:  # a runner without metrics support
        return {"error": f"{type(e).__name__}: {e}"}

    def val(r: Any) -> Any:
        try:
            v = r.committed
        except Exception:
            v = None
        return v if v is not None else r.attempted

    for r in q.get("counters", []):
        if r.key.metric.namespace == "yamnet_beam":
            name = r.key.metric.name
            out["counters"][name] = out["counters"].get(name, 0) + int(val(r))
    for r in q.get("distributions", []):
        if r.key.metric.namespace == "yamnet_beam":
            d = val(r)
            out["distributions"][r.key.metric.name] = {
                "count": d.count,
                "sum": d.sum,
                "min": d.min,
                "max": d.max,
            }
    return out


def _parquet_bytes(output: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    res: dict[str, Any] = {}
    for table in ("frames", "files"):
        files = sorted((output / table).glob("*.parquet"))
        res[f"{table}_bytes"] = sum(f.stat().st_size for f in files)
        if table == "frames":
            cols: dict[str, int] = {}
            rows = groups = 0
            for f in files:
                md = pq.ParquetFile(f).metadata
                rows += md.num_rows
                groups += md.num_row_groups
                for g in range(md.num_row_groups):
                    rg = md.row_group(g)
                    for c in range(rg.num_columns):
                        col = rg.column(c)
                        name = col.path_in_schema.split(".")[0]
                        cols[name] = cols.get(name, 0) + col.total_compressed_size
            res.update(frames_rows=rows, frames_row_groups=groups, frames_files=len(files), column_bytes=cols)
    return res


def _run_pipeline(argv: list[str]) -> tuple[Any, Any, float]:
    """Runs the job through ``yamnet_beam.job.pipeline.run`` (the exact user path, summary and manifest included),
    capturing the PipelineResult for its metrics with a ``beam.Pipeline`` subclass passed as ``test_pipeline``."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from yamnet_beam.job import pipeline as yp

    captured: dict[str, Any] = {}

    class CapturingPipeline(beam.Pipeline):
        def run(self, *a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            result = super().run(*a, **kw)
            result.wait_until_finish()
            captured["result"], captured["pipeline_s"] = result, time.perf_counter() - t0
            return result

    summary = yp.run(argv, test_pipeline=CapturingPipeline(options=PipelineOptions(argv)))
    return summary, captured.get("result"), captured.get("pipeline_s", float("nan"))


def child_pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    import logging

    logging.basicConfig(level=logging.WARNING)
    output = Path(spec["output"])
    argv = [f"--input={p}" for p in spec["inputs"]]
    argv += [
        f"--output={output}",
        f"--model={spec['model']}",
        f"--class_map={spec['class_map']}",
        "--mode=overwrite",
        f"--embedding_dtype={spec.get('embedding_dtype', 'float32')}",
        *spec.get("extra", []),
    ]
    t0 = time.perf_counter()
    import apache_beam  # noqa: F401  (imports are start-up too, but reported apart from run())

    import yamnet_beam.job.pipeline  # noqa: F401

    import_s = time.perf_counter() - t0
    profiler = None
    if spec.get("profile"):
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
    with RssSampler() as rss:
        t0 = time.perf_counter()
        summary, result, pipeline_s = _run_pipeline(argv)
        wall = time.perf_counter() - t0
    if profiler is not None:
        profiler.stop()
        Path(spec["profile"]).write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        Path(spec["profile"]).with_suffix(".html").write_text(profiler.output_html())
    out = {
        "import_s": import_s,
        "wall_s": wall,
        "pipeline_s": pipeline_s,
        "rss": rss.report(),
        "metrics": _metrics(result) if result is not None else {},
        "bytes": _parquet_bytes(output),
    }
    out["summary"] = {
        k: getattr(summary, k) for k in ("files_matched", "files_ok", "files_error", "frames", "audio_hours")
    }
    return out


def child_naive(spec: dict[str, Any]) -> dict[str, Any]:
    """The baseline a first attempt would write: whole-file decode, mean downmix, per-row dicts."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soundfile as sf
    import soxr
    from ai_edge_litert.interpreter import Interpreter

    from yamnet_beam.model import expose_embedding

    with RssSampler() as rss:
        t0 = time.perf_counter()
        with open(spec["model"], "rb") as f:
            interp = Interpreter(model_content=expose_embedding(f.read()), num_threads=1)
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]["index"]
        outs = {int(d["shape"][-1]): d["index"] for d in interp.get_output_details()}
        with open(spec["class_map"]) as f:
            labels = [r["display_name"] for r in csv.DictReader(f)]
        out_dir = Path(spec["output"])
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        frames = 0
        audio_s = 0.0
        for i, path in enumerate(spec["inputs"]):
            x, rate = sf.read(path, dtype="float32", always_2d=True)
            audio_s += len(x) / rate
            mono = x.mean(axis=1)
            y = soxr.resample(mono, rate, TARGET_RATE).astype(np.float32)
            n16 = len(y)
            n = 1 + max(0, -(-(n16 - 15600) // 7680))
            y = np.concatenate([y, np.zeros(max(0, (n - 1) * 7680 + 15600 - len(y)), np.float32)])
            rows = []
            for k in range(n):
                interp.set_tensor(inp, y[k * 7680 : k * 7680 + 15600][None, :])
                interp.invoke()
                scores = interp.get_tensor(outs[521])[0]
                emb = interp.get_tensor(outs[1024])[0]
                top = int(np.argmax(scores))
                rows.append(
                    {
                        "path": path,
                        "frame": k,
                        "start_s": k * 7680 / TARGET_RATE,
                        "end_s": (k * 7680 + 15600) / TARGET_RATE,
                        "valid_samples": min(15600, max(0, n16 - k * 7680)),
                        "scores": scores.tolist(),
                        "embedding": emb.tolist(),
                        "top_label": labels[top],
                        "top_score": float(scores[top]),
                    }
                )
            frames += n
            pq.write_table(pa.Table.from_pylist(rows), out_dir / f"part-{i:05d}.parquet", compression="zstd")
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "frames": frames, "audio_s": audio_s, "rss": rss.report()}


# ------------------------------------------------------------------------------------------------
# Orchestration


@dataclasses.dataclass
class Ctx:
    cache: Path
    model: Path
    class_map: Path
    log: Callable[[str], None]
    keep_outputs: bool = False
    pipeline_args: tuple[str, ...] = ()
    wait_budget_s: float = 0.0  # total time we may wait for other processes to go quiet before timed runs

    def wait_quiet(self, threshold: float = 0.1, window_s: float = 1.0) -> float:
        """Waits (within the budget) until other processes use < ``threshold`` of the cores; returns their share."""
        cores = os.cpu_count() or 1
        while True:
            b0 = _system_busy_s()
            time.sleep(window_s)
            share = (_system_busy_s() - b0) / (window_s * cores)
            if share < threshold or self.wait_budget_s <= 0:
                return round(share, 3)
            self.wait_budget_s -= window_s


def spawn(ctx: Ctx, kind: str, label: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Runs one child (fresh interpreter) and returns its JSON report, adding the outside wall time."""
    runs = ctx.cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "model": str(ctx.model), "class_map": str(ctx.class_map), "kind": kind}
    spec.setdefault("output", str(ctx.cache / "out" / label))
    spec_path, res_path, log_path = (runs / f"{label}.{s}" for s in ("spec.json", "result.json", "log"))
    spec_path.write_text(json.dumps(spec))
    res_path.unlink(missing_ok=True)
    quiet = ctx.wait_quiet()
    load0, busy0 = _loadavg(), _system_busy_s()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log_path, "w") as logf:
        rc = subprocess.call(
            [sys.executable, str(Path(__file__).resolve()), "--_child", str(spec_path), str(res_path)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
            env=CHILD_ENV,
        )
    outer = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0 or not res_path.exists():
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"{label}: child failed (exit {rc}); log {log_path}:\n{tail}")
    res = json.loads(res_path.read_text())
    res["process_wall_s"] = outer
    # CPU of the child and every descendant it waited for (Beam waits for its SDK worker processes).
    res["process_cpu_s"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    res["loadavg_1m"] = [load0, _loadavg()]
    res["foreign_share_before"] = quiet
    # CPU used by other processes meanwhile: > 0 means the timings were competing for the cores.
    res["foreign_cpu_s"] = round(max(0.0, _system_busy_s() - busy0 - res["process_cpu_s"]), 2)
    res["foreign_cpu_share"] = round(res["foreign_cpu_s"] / (outer * (os.cpu_count() or 1)), 3)
    if not ctx.keep_outputs:
        shutil.rmtree(spec["output"], ignore_errors=True)
    return res


def _system_busy_s() -> float:
    """CPU seconds spent by everything on the machine since boot (all cores), from /proc/stat."""
    try:
        f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return float("nan")
    idle = f[3] + f[4]  # idle + iowait
    return (sum(f) - idle) / os.sysconf("SC_CLK_TCK")


def _loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def _workers_args(workers: int) -> list[str]:
    if workers == 1:
        return ["--runner=DirectRunner", "--direct_num_workers=1"]
    return ["--runner=DirectRunner", "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]


def run_pipeline_case(
    ctx: Ctx,
    label: str,
    inputs: Sequence[Path],
    workers: int,
    repeats: int = 1,
    flags: Sequence[str] = (),
    **kw: Any,
):
    best = None
    for r in range(repeats):
        extra = [*_workers_args(workers), *ctx.pipeline_args, *flags]
        res = spawn(ctx, "pipeline", f"{label}-{r}", {"inputs": [str(p) for p in inputs], "extra": extra, **kw})
        ctx.log(f"  {label} run {r + 1}/{repeats}: {res['wall_s']:.2f} s")
        if best is None or res["wall_s"] < best["wall_s"]:
            best = res
    best["repeats"] = repeats
    return best


def run_alternating(
    ctx: Ctx, cases: dict[str, Sequence[str]], inputs: Sequence[Path], workers: int, repeats: int
) -> dict[str, dict[str, Any]]:
    """The best of ``repeats`` runs of each case (label -> extra flags), the cases taking turns, so that
    a change in the machine's load hits them alike; the CPU seconds of every run are kept too."""
    best: dict[str, dict[str, Any]] = {}
    cpu: dict[str, list[float]] = {label: [] for label in cases}
    for r in range(repeats):
        for label, flags in cases.items():
            res = run_pipeline_case(ctx, f"{label}-r{r}", inputs, workers, 1, flags)
            cpu[label].append(round(res["process_cpu_s"], 3))
            if label not in best or res["wall_s"] < best[label]["wall_s"]:
                best[label] = res
    for label, res in best.items():
        res.update(repeats=repeats, all_cpu_s=cpu[label])
    return best


def machine_info() -> dict[str, Any]:
    from importlib import metadata

    def ver(d: str) -> str:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            return "-"

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError):
        mem_gb = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024**2, 1)
    import soundfile

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "mem_gb": mem_gb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "apache_beam": ver("apache-beam"),
        "ai_edge_litert": ver("ai-edge-litert"),
        "numpy": ver("numpy"),
        "pyarrow": ver("pyarrow"),
        "soundfile": ver("soundfile"),
        "libsndfile": soundfile.__libsndfile_version__,
        "soxr": ver("soxr"),
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")},
    }


def stage_shares(res: dict[str, Any], startup_s: float, workers: int) -> dict[str, Any]:
    """Share of worker time per stage from the DoFn's *_ms counters; the rest is framing, Beam and Python."""
    counters = res.get("metrics", {}).get("counters", {})
    busy = max(1e-9, (res["wall_s"] - startup_s) * workers)
    stages = {k[: -len("_ms")]: v / 1000 for k, v in counters.items() if k.endswith("_ms") and k != "audio_ms"}
    shares = {k: round(v / busy, 4) for k, v in sorted(stages.items())}
    shares["other"] = round(max(0.0, 1 - sum(stages.values()) / busy), 4)
    return {"seconds": {k: round(v, 3) for k, v in stages.items()}, "share": shares, "busy_s": round(busy, 3)}


def _rss_worker(res: dict[str, Any], workers: int) -> float:
    r = res["rss"]
    if workers == 1:
        return r["driver_peak_mb"]
    return max(r["worker_peaks_mb"] or [r["children_ru_maxrss_mb"]])


def main_bench(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    log = print
    shared = Path(os.environ.get("YAMNET_BEAM_SHARED", REPO.parent / "shared"))
    model = Path(args.model or shared / "models" / "yamnet.tflite")
    class_map = Path(args.class_map or model.with_name("yamnet_class_map.csv"))
    for p in (model, class_map):
        if not p.is_file():
            sys.exit(f"missing {p}: pass --model/--class_map or set YAMNET_BEAM_SHARED")
    cache = Path(args.cache)
    ctx = Ctx(
        cache,
        model,
        class_map,
        log,
        keep_outputs=args.keep_outputs,
        pipeline_args=tuple(args.pipeline_arg),
        wait_budget_s=args.max_wait,
    )
    corpus = corpus_specs(args.quick)
    paths = ensure_corpus(corpus, cache, log)
    mixed = [paths[s.name] for s in corpus.mixed]
    long_p, short_p, tiny_p = paths[corpus.long.name], paths[corpus.short.name], paths[corpus.tiny.name]
    repeats = args.repeats if args.repeats else (1 if args.quick else 2)
    machine = machine_info()
    log(
        f"machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
        f"Beam {machine['apache_beam']}, LiteRT {machine['ai_edge_litert']}, OPENBLAS env {machine['openblas_env']}"
    )

    if args.profile:
        target = {"short": [short_p], "long": [long_p], "mixed": mixed}[args.profile]
        prof = HERE / "results" / f"profile_{args.profile}.txt"
        prof.parent.mkdir(parents=True, exist_ok=True)
        res = run_pipeline_case(ctx, f"profile-{args.profile}", target, 1, profile=str(prof))
        log(f"profiled 1-worker run on {args.profile}: {res['wall_s']:.1f} s -> {prof} (+ .html)")
        return 0

    results: dict[str, Any] = {
        "machine": machine,
        "quick": args.quick,
        "repeats": repeats,
        "pipeline_args": list(ctx.pipeline_args),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    results["corpus"] = {
        "mixed": {
            "files": len(corpus.mixed),
            "audio_s": sum(s.seconds for s in corpus.mixed),
            "bytes": sum(p.stat().st_size for p in mixed),
            "specs": [dataclasses.asdict(s) for s in corpus.mixed],
        },
        "long": dataclasses.asdict(corpus.long) | {"bytes": long_p.stat().st_size},
        "short": dataclasses.asdict(corpus.short) | {"bytes": short_p.stat().st_size},
    }

    log("(a) floor on the mixed corpus ...")
    ctx.wait_quiet()
    floor = measure_floor(mixed, model, repeats)
    results["floor_mixed"] = floor
    log(f"  {json.dumps(floor)}")

    log("(f) the model alone: per-frame invoke vs batched ...")
    ctx.wait_quiet()
    model_alone = measure_model(model, 30.0 if args.quick else 120.0, 3 if args.quick else 7)
    results["model_alone"] = model_alone
    for m_row in model_alone.get("rows", []):
        log(
            f"  {m_row['case']}: {m_row['frames_per_s']:.0f} frames/s, "
            f"x{m_row['ratio']:.3f} (CPU x{m_row['cpu_ratio']:.3f})"
        )

    log("(b) pipeline end to end ...")
    su1 = run_pipeline_case(ctx, "startup-1w", [tiny_p], 1, repeats)
    su2 = run_pipeline_case(ctx, "startup-2w", [tiny_p], 2, repeats)
    # The batched path and per-frame invoke (--inference per_frame) taking turns: what batching buys the pipeline.
    both = run_alternating(ctx, {"mixed-1w": [], "mixed-1w-per-frame": ["--inference=per_frame"]}, mixed, 1, repeats)
    p1, p1_per_frame = both["mixed-1w"], both["mixed-1w-per-frame"]
    log("(g) parallel capacity: two bare-invoke processes at once vs one ...")
    capacity = measure_capacity(ctx, 120.0 if args.quick else 600.0, 1 if args.quick else 3)
    results["capacity"] = capacity
    p2 = run_pipeline_case(ctx, "mixed-2w", mixed, 2, repeats)
    p16 = run_pipeline_case(ctx, "mixed-1w-f16", mixed, 1, 1, embedding_dtype="float16")

    naive = None
    if not args.skip_naive:
        log("(c) naive baseline ...")
        naive = spawn(ctx, "naive", "naive", {"inputs": [str(p) for p in mixed]})
        log(f"  naive: {naive['wall_s']:.2f} s")

    log("(d) peak RSS on the long and the short file ...")
    rss_runs = {}
    for name, p in (("long", long_p), ("short", short_p)):
        for w in (1, 2):
            rss_runs[f"{name}-{w}w"] = run_pipeline_case(ctx, f"{name}-{w}w", [p], w, 1)
    log("  floor (decode/resample) of the long and the short file ...")
    floor_long = measure_floor([long_p], model, 1, invoke=False)
    floor_short = measure_floor([short_p], model, 1, invoke=False)

    # ---- derived figures
    audio_s, frames = floor["audio_s"], floor["frames"]
    floor_s = floor_total(floor)
    net1, net2 = p1["wall_s"] - su1["wall_s"], p2["wall_s"] - su2["wall_s"]
    ms_frame = floor["invoke_ms_per_frame"] / 1000

    def row(name: str, res: dict, su: dict | None, frames_: int, audio: float, floor_: float, invoke_: float) -> dict:
        wall, cpu = res["wall_s"], res["process_cpu_s"]
        net = wall - (su["wall_s"] if su else 0.0)
        net_cpu = cpu - (su["process_cpu_s"] if su else 0.0)
        return {
            "case": name,
            "wall_s": round(wall, 3),
            "startup_s": None if su is None else round(su["wall_s"], 3),
            "net_s": round(net, 3),
            "cpu_s": round(cpu, 3),
            "net_cpu_s": round(net_cpu, 3),
            "frames_per_s": round(frames_ / net, 1),
            "realtime_x": round(audio / net, 1),
            "vs_floor": round(floor_ / net, 3),
            "vs_floor_raw": round(floor_ / wall, 3),
            "vs_floor_cpu": round(floor_ / net_cpu, 3),
            "vs_invoke": round(invoke_ / net, 3),  # frames/s over bare per-frame invoke's (one core, CPU s)
            "vs_invoke_cpu": round(invoke_ / net_cpu, 3),
            "loadavg_1m": res.get("loadavg_1m"),
            "foreign_cpu_share": res.get("foreign_cpu_share"),
        }

    fl_res = {
        "wall_s": floor_s,
        "process_cpu_s": floor_s,
        "foreign_cpu_share": round(floor["foreign_cpu_s"] / (floor["measure_wall_s"] * (os.cpu_count() or 1)), 3),
    }
    invoke_s = floor["invoke_s"]
    bare = {"wall_s": invoke_s, "process_cpu_s": invoke_s, "foreign_cpu_share": fl_res["foreign_cpu_share"]}
    table = [
        row("floor (a)", fl_res, None, frames, audio_s, floor_s, invoke_s),
        row("bare per-frame invoke (a)", bare, None, frames, audio_s, floor_s, invoke_s),
        row("pipeline 1 worker", p1, su1, frames, audio_s, floor_s, invoke_s),
        row("pipeline 1 worker, --inference per_frame", p1_per_frame, su1, frames, audio_s, floor_s, invoke_s),
        row("pipeline 2 workers", p2, su2, frames, audio_s, floor_s, invoke_s),
        row("pipeline 1 worker f16", p16, su1, frames, audio_s, floor_s, invoke_s),
    ]
    if naive:
        table.append(row("naive loop (c)", naive, None, naive["frames"], naive["audio_s"], floor_s, invoke_s))
    long_rows = []
    for name, fl in (("long", floor_long), ("short", floor_short)):
        fl_s = floor_total(fl, fl["frames"] * ms_frame)
        for w, su in ((1, su1), (2, su2)):
            r = rss_runs[f"{name}-{w}w"]
            long_rows.append(
                row(f"{name} file {w}w", r, su, fl["frames"], fl["audio_s"], fl_s, fl["frames"] * ms_frame)
                | {"peak_rss_worker_mb": _rss_worker(r, w), "rss": r["rss"]}
            )
    results.update(
        floor_long=floor_long,
        floor_short=floor_short,
        table=table,
        long_table=long_rows,
        startup={"1w": su1, "2w": su2},
        pipeline={"1w": p1, "1w_per_frame": p1_per_frame, "2w": p2, "1w_f16": p16},
        naive=naive,
        rss_runs=rss_runs,
        stage_shares={
            "1w": stage_shares(p1, su1["wall_s"], 1),
            "2w": stage_shares(p2, su2["wall_s"], 2),
        },
    )
    hours = audio_s / 3600
    results["bytes_per_audio_hour"] = {
        "float32": round(p1["bytes"]["frames_bytes"] / hours),
        "float16": round(p16["bytes"]["frames_bytes"] / hours),
        "files_table_float32": p1["bytes"]["files_bytes"],
        "column_bytes_per_hour_float32": {k: round(v / hours) for k, v in p1["bytes"]["column_bytes"].items()},
        "column_bytes_per_hour_float16": {k: round(v / hours) for k, v in p16["bytes"]["column_bytes"].items()},
        "row_groups_float32": p1["bytes"]["frames_row_groups"],
        "parquet_files_float32": p1["bytes"]["frames_files"],
    }

    rss_l1, rss_s1 = long_rows[0]["peak_rss_worker_mb"], long_rows[2]["peak_rss_worker_mb"]
    rss_l2, rss_s2 = long_rows[1]["peak_rss_worker_mb"], long_rows[3]["peak_rss_worker_mb"]
    targets = [
        {
            "target": f"1 worker >= {TARGET_FLOOR_RATIO} x floor (mixed corpus, start-up subtracted)",
            "value": f"{floor_s / net1:.3f} (on CPU time: {table[2]['vs_floor_cpu']:.3f})",
            "met": floor_s / net1 >= TARGET_FLOOR_RATIO,
        },
        {
            "target": f"1 worker frames/s >= {TARGET_VS_BARE_INVOKE} x bare per-frame invoke (start-up subtracted)",
            "value": f"{invoke_s / net1:.3f} (on CPU time: {table[2]['vs_invoke_cpu']:.3f}; vs the bare-invoke process "
            f"timed next to it (wall): {frames / net1 / capacity['one_frames_per_s']:.3f}; inference: "
            f"{model_alone.get('inference')})",
            "met": invoke_s / net1 >= TARGET_VS_BARE_INVOKE,
        },
        {
            "target": f"2 workers' speedup over 1 >= {TARGET_CAPACITY_SHARE} x the machine's 2-process capacity",
            "value": f"{net1 / net2 / capacity['capacity']:.3f} (2w/1w {net1 / net2:.3f}; capacity "
            f"{capacity['capacity']:.3f}: bare invoke {capacity['one_frames_per_s']:.0f} frames/s alone, "
            f"{capacity['two_frames_per_s']:.0f} two at once; CPU s per SDK worker {p2['rss'].get('worker_cpu_s')})",
            "met": net1 / net2 >= TARGET_CAPACITY_SHARE * capacity["capacity"],
        },
    ]
    for w, lo, sh in ((1, rss_l1, rss_s1), (2, rss_l2, rss_s2)):
        growth = lo / sh - 1
        targets.append(
            {
                "target": f"peak RSS per worker, long file, {w}w <= {TARGET_RSS_MB:.0f} MB "
                f"and within {TARGET_RSS_GROWTH:.0%} of the short file",
                "value": f"{lo:.0f} MB vs {sh:.0f} MB ({growth:+.1%})",
                "met": lo <= TARGET_RSS_MB and abs(growth) <= TARGET_RSS_GROWTH,
            }
        )
    if naive:
        targets.append(
            {
                "target": "pipeline 1 worker (start-up included) beats the naive loop",
                "value": f"{p1['wall_s']:.1f} s vs {naive['wall_s']:.1f} s ({naive['wall_s'] / p1['wall_s']:.2f}x)",
                "met": p1["wall_s"] < naive["wall_s"],
            }
        )
    results["targets"] = targets
    su_cpu = su1["process_cpu_s"]
    results["batched_vs_per_frame"] = {
        "net_wall": round((p1_per_frame["wall_s"] - su1["wall_s"]) / net1, 3),
        "net_cpu_median": round(
            (float(np.median(p1_per_frame["all_cpu_s"])) - su_cpu) / (float(np.median(p1["all_cpu_s"])) - su_cpu), 3
        ),
        "cpu_s": {"batched": p1["all_cpu_s"], "per_frame": p1_per_frame["all_cpu_s"], "startup": round(su_cpu, 3)},
    }
    results["bench_wall_s"] = round(time.perf_counter() - t_start, 1)

    # A smoke run must not replace the recorded full results that the READMEs quote.
    out = Path(args.out or (cache / "quick.json" if args.quick else DEFAULT_OUT))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    print()
    print(format_report(results))
    print(f"\nJSON: {out}  (benchmark wall {results['bench_wall_s']:.0f} s)")
    return 0


def format_report(r: dict[str, Any]) -> str:
    m, c, f = r["machine"], r["corpus"], r["floor_mixed"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['mem_gb']} GB; "
        f"Python {m['python']}, Beam {m['apache_beam']}, LiteRT {m['ai_edge_litert']}, numpy {m['numpy']}, "
        f"pyarrow {m['pyarrow']}, libsndfile {m['libsndfile']}, soxr {m['soxr']}; "
        f"OPENBLAS env: {m['openblas_env'] or 'unset'}",
        f"Mixed corpus: {c['mixed']['files']} files, {c['mixed']['audio_s'] / 60:.1f} min, "
        f"{f['frames']} frames (WAV/FLAC/MP3/Ogg x 16/44.1/48 kHz x mono/stereo); best of {r['repeats']} run(s)",
        f"Floor (one core, CPU s): decode {f['decode_s']:.2f} + downmix {f['downmix_s']:.2f} + resample "
        f"{f['resample_s']:.2f} + bare invoke {f['invoke_s']:.2f} = {floor_total(f):.2f} "
        f"(bare invoke {f['invoke_ms_per_frame']:.3f} ms/frame = {1000 / f['invoke_ms_per_frame']:.0f} frames/s; "
        f"YamnetModel.predict {f['predict_ms_per_frame']:.3f} ms/frame; resample best: {f['resample_methods']})",
        "",
        "| case | wall s | start-up s | net s | frames/s | x realtime | vs floor | vs floor (raw wall) "
        "| net CPU s | vs floor (CPU) | vs bare invoke | vs bare invoke (CPU) | others' CPU | load 1m |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in r["table"]:
        su = "-" if t["startup_s"] is None else f"{t['startup_s']:.2f}"
        load = "-" if t.get("foreign_cpu_share") is None else f"{t['foreign_cpu_share']:.0%}"
        avg = "-" if not t.get("loadavg_1m") else f"{t['loadavg_1m'][0]:.1f}"
        lines.append(
            f"| {t['case']} | {t['wall_s']:.2f} | {su} | {t['net_s']:.2f} | {t['frames_per_s']:.0f} | "
            f"{t['realtime_x']:.0f} | {t['vs_floor']:.2f} | {t['vs_floor_raw']:.2f} | {t['net_cpu_s']:.2f} | "
            f"{t['vs_floor_cpu']:.2f} | {t['vs_invoke']:.2f} | {t['vs_invoke_cpu']:.2f} | {load} | {avg} |"
        )
    bp = r.get("batched_vs_per_frame")
    if bp:
        lines += [
            "",
            f"Pipeline 1 worker, batched over --inference per_frame (runs taking turns): {bp['net_wall']:.3f}x on "
            f"net wall time (best runs), {bp['net_cpu_median']:.3f}x on net CPU time (median runs; CPU s per run "
            f"{bp['cpu_s']['batched']} vs {bp['cpu_s']['per_frame']}, start-up {bp['cpu_s']['startup']})",
        ]
    ma = r.get("model_alone", {})
    if ma.get("rows"):
        lines += [
            "",
            f"Model alone ({ma['seconds']:.0f} s of 16 kHz audio, {ma['repeats']} interleaved repeats, ratios within "
            f"a repeat, median; others' CPU {ma['foreign_cpu_share']:.0%}):",
            "",
            "| case | frames/s | ratio (min-max) | CPU frames/s | ratio on CPU time | vs |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for m_row in ma["rows"]:
            lo, hi = m_row["ratio_range"]
            lines.append(
                f"| {m_row['case']} | {m_row['frames_per_s']:.0f} | {m_row['ratio']:.3f} ({lo:.2f}-{hi:.2f}) | "
                f"{m_row['cpu_frames_per_s']:.0f} | {m_row['cpu_ratio']:.3f} | {m_row['baseline']} |"
            )
    cap = r.get("capacity")
    if cap:
        loads = [x["loadavg_1m"] for n in ("1", "2") for x in cap["runs"][n]]
        lines += [
            "",
            f"Parallel capacity: bare invoke {cap['one_frames_per_s']:.0f} frames/s in one process, "
            f"{cap['two_frames_per_s']:.0f} in two at once = {cap['capacity']:.3f}x (best of "
            f"{len(cap['runs']['1'])}; load average {min(loads):.1f}-{max(loads):.1f})",
        ]
    lines += [
        "",
        "| long-file case | audio | wall s | net s | x realtime | vs floor | vs floor (CPU) | peak RSS per worker MB "
        "| others' CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t, spec in zip(r["long_table"], (c["long"], c["long"], c["short"], c["short"]), strict=True):
        lines.append(
            f"| {t['case']} | {spec['seconds'] / 60:.0f} min {spec['container']} {spec['rate'] / 1000:g}k "
            f"{spec['channels']}ch | {t['wall_s']:.2f} | {t['net_s']:.2f} | {t['realtime_x']:.0f} | "
            f"{t['vs_floor']:.2f} | {t['vs_floor_cpu']:.2f} | {t['peak_rss_worker_mb']:.0f} | "
            f"{t['foreign_cpu_share']:.0%} |"
        )
    lines.append("")
    for w, s in r["stage_shares"].items():
        parts = ", ".join(
            f"{k} {v:.0%} ({s['seconds'].get(k, 0):.2f} s)" if k in s["seconds"] else f"{k} {v:.0%}"
            for k, v in s["share"].items()
        )
        lines.append(f"Stage share of worker time ({w}, {s['busy_s']:.2f} worker-s): {parts}")
    w2 = r["pipeline"]["2w"]["rss"]
    lines.append(
        f"2-worker mixed run: CPU s per SDK worker process {w2.get('worker_cpu_s')}, "
        f"peak RSS MB {w2['worker_peaks_mb']} (helper `sh -c` wrappers included)"
    )
    b = r["bytes_per_audio_hour"]
    lines.append(
        f"Output frames/ bytes per audio hour: float32 {b['float32'] / 1e6:.1f} MB, "
        f"float16 {b['float16'] / 1e6:.1f} MB "
        f"({b['parquet_files_float32']} file(s), {b['row_groups_float32']} row groups); per column (f32, MB/h): "
        + ", ".join(f"{k} {v / 1e6:.2f}" for k, v in b["column_bytes_per_hour_float32"].items())
    )
    lines += ["", "| target | value | met |", "| --- | --- | --- |"]
    for t in r["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_child"]:
        spec = json.loads(Path(argv[1]).read_text())
        res = {"pipeline": child_pipeline, "naive": child_naive, "invoke": child_invoke}[spec["kind"]](spec)
        Path(argv[2]).write_text(json.dumps(res, default=str))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="~6-minute corpus, 3-min 'long' file, 1 repeat: a smoke run")
    ap.add_argument(
        "--out",
        default=None,
        help=f"JSON results (default {DEFAULT_OUT.relative_to(REPO)}; with --quick, quick.json in the --cache folder)",
    )
    ap.add_argument("--cache", default=str(DEFAULT_CACHE), help="corpus and scratch directory (git-ignored)")
    ap.add_argument("--repeats", type=int, default=0, help="best-of-N for timed runs (default 2, --quick 1)")
    ap.add_argument(
        "--max-wait",
        type=float,
        default=120.0,
        help="seconds in total the run may wait for other processes to go quiet before timed steps (default 120)",
    )
    ap.add_argument("--skip-naive", action="store_true", help="skip the naive baseline (c)")
    ap.add_argument("--model", default=None, help="YAMNet .tflite (default $YAMNET_BEAM_SHARED/models/yamnet.tflite)")
    ap.add_argument("--class_map", default=None, help="class map CSV (default beside the model)")
    ap.add_argument(
        "--profile",
        choices=("short", "long", "mixed"),
        default=None,
        help="instead of the benchmark: pyinstrument a 1-worker run on the 10-min file, 2-h file or mixed corpus "
        "(needs `pip install pyinstrument`); writes benchmarks/results/profile_*.txt/.html",
    )
    ap.add_argument(
        "--pipeline-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra flag for every pipeline run, e.g. --pipeline-arg=--part_files=4 (to try a lever)",
    )
    ap.add_argument("--keep-outputs", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    return main_bench(args)


if __name__ == "__main__":
    sys.exit(main())
