"""Processes for the benchmarks: this checkout first on every path, fresh children, their RSS and the machine's load.

Every timed run happens in a fresh interpreter (the benchmark script re-invoked with ``--_child``), so
RSS, caches and imports are those of a real run; :func:`spawn` runs one and records the CPU that other
processes used meanwhile, so a result measured on a busy machine says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parents[1]
REPO = BENCHMARKS.parent
# Measure the checkout this file is in, not whichever yamnet_beam is installed: on PYTHONPATH for every child
# (Beam's worker processes included); pipeline_bench.py puts it first on its own path too.
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}


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


def peak_rss_mb() -> float:
    """This process's peak RSS (``VmHWM``): unlike ``ru_maxrss``, not inherited from the parent at fork/exec."""
    kb = status_kb(os.getpid(), "VmHWM")
    return kb / 1024 if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def status_kb(pid: int, key: str) -> int | None:
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
            hwm = status_kb(pid, "VmHWM")
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


def system_busy_s() -> float:
    """CPU seconds spent by everything on the machine since boot (all cores), from /proc/stat."""
    try:
        f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return float("nan")
    idle = f[3] + f[4]  # idle + iowait
    return (sum(f) - idle) / os.sysconf("SC_CLK_TCK")


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


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


@dataclasses.dataclass
class Ctx:
    cache: Path
    model: Path
    class_map: Path
    log: Callable[[str], None]
    keep_outputs: bool = False
    pipeline_args: tuple[str, ...] = ()
    wait_budget_s: float = 0.0  # total time we may wait for other processes to go quiet before timed runs
    script: Path = BENCHMARKS / "pipeline_bench.py"  # re-invoked with --_child for every child

    def wait_quiet(self, threshold: float = 0.1, window_s: float = 1.0) -> float:
        """Waits (within the budget) until other processes use < ``threshold`` of the cores; returns their share."""
        cores = os.cpu_count() or 1
        while True:
            b0 = system_busy_s()
            time.sleep(window_s)
            share = (system_busy_s() - b0) / (window_s * cores)
            if share < threshold or self.wait_budget_s <= 0:
                return round(share, 3)
            self.wait_budget_s -= window_s


def child_env(code: Path = REPO) -> dict[str, str]:
    """The children's environment with ``code`` (a checkout holding ``yamnet_beam/``) first on PYTHONPATH."""
    rest = [p for p in CHILD_ENV["PYTHONPATH"].split(os.pathsep) if p and p != str(REPO)]
    return {**CHILD_ENV, "PYTHONPATH": os.pathsep.join([str(code), *rest]), "PYTHONDONTWRITEBYTECODE": "1"}


def spawn(ctx: Ctx, kind: str, label: str, spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs one child (fresh interpreter) and returns its JSON report, adding the outside wall time.

    ``env``: the child's environment (default :data:`CHILD_ENV`; :func:`child_env` runs another checkout)."""
    runs = ctx.cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "model": str(ctx.model), "class_map": str(ctx.class_map), "kind": kind}
    spec.setdefault("output", str(ctx.cache / "out" / label))
    spec_path, res_path, log_path = (runs / f"{label}.{s}" for s in ("spec.json", "result.json", "log"))
    spec_path.write_text(json.dumps(spec))
    res_path.unlink(missing_ok=True)
    quiet = ctx.wait_quiet()
    load0, busy0 = loadavg(), system_busy_s()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log_path, "w") as logf:
        rc = subprocess.call(
            [sys.executable, str(ctx.script), "--_child", str(spec_path), str(res_path)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
            env=CHILD_ENV if env is None else env,
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
    res["loadavg_1m"] = [load0, loadavg()]
    res["foreign_share_before"] = quiet
    # CPU used by other processes meanwhile: > 0 means the timings were competing for the cores.
    res["foreign_cpu_s"] = round(max(0.0, system_busy_s() - busy0 - res["process_cpu_s"]), 2)
    res["foreign_cpu_share"] = round(res["foreign_cpu_s"] / (outer * (os.cpu_count() or 1)), 3)
    if not ctx.keep_outputs:
        shutil.rmtree(spec["output"], ignore_errors=True)
    return res
