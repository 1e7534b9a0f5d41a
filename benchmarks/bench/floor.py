"""The floor: the best standalone single-core cost of each irreducible stage (decode, downmix, resample, invoke)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import TARGET_RATE
from bench.procs import system_busy_s


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
    cpu0, busy0, wall0 = time.process_time(), system_busy_s(), time.perf_counter()
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
    cpu, busy = time.process_time() - cpu0, system_busy_s() - busy0
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
