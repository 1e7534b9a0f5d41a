"""Helpers for the runner tests: the inputs, running the CLI with a bounded time, cached tools, row comparison."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]

# A few good files (WAV 16 kHz float, 44.1/48 kHz stereo FLAC, a tone, a sub-window clip) and one bad one.
GOOD = ["speech_16k_float32.wav", "speech_48k_stereo.flac", "tone_1khz_16k.wav", "short_0.3s_16k.wav"]
BAD = ["bad_truncated.flac"]

RUNNER_CACHE = Path(os.environ.get("YAMNET_BEAM_RUNNER_CACHE", REPO / ".cache" / "runners"))
RUN_TIMEOUT_S = 420


def cached_tool(relative: str) -> Path:
    """A tool built by ``.ci/runner-tools``; fails (not skips) with the fix when it is missing."""
    path = RUNNER_CACHE / relative
    if not path.exists():
        pytest.fail(f"{path} is missing: run `bash .ci/runner-tools` first (it fetches/builds the runner tools).")
    return path


def beam_version() -> str:
    import apache_beam

    return apache_beam.__version__


def python_boot(directory: Path) -> Path:
    """``directory/python-boot``: Beam's boot program for PROCESS workers, in venvs built on this interpreter's
    packages (``.ci/flink-cluster python-boot``), so the runner tests pass from a virtualenv as from the base one."""
    proc = subprocess.run(
        ["bash", str(REPO / ".ci" / "flink-cluster"), "python-boot", str(directory)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    boot = directory / "python-boot"
    if proc.returncode != 0 or not boot.is_file():
        pytest.fail(f"flink-cluster python-boot exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return boot


def cli(python: str | Path = sys.executable) -> str:
    """The ``yamnet-beam`` console script of an interpreter's environment (what the README tells users to run)."""
    script = Path(python).parent / "yamnet-beam"
    if not script.is_file():
        pytest.fail(f"no yamnet-beam console script beside {python}: install the package (pip install -e .)")
    return str(script)


def run_cli(
    argv: list[str], *, cwd: Path, python: str | Path = sys.executable, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Runs ``yamnet-beam run ARGV`` in a subprocess with a bounded time; fails with its output tail."""
    cmd = [cli(python), "run", *argv]
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} did not finish in {RUN_TIMEOUT_S} s:\n{(e.stderr or '')[-4000:]}")
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}")
    return proc


def files_rows(out: Path) -> list[dict]:
    return sorted(pq.read_table(out / "files").to_pylist(), key=lambda r: r["path"])


def frames_by_key(out: Path) -> tuple[list[tuple[str, int]], dict[str, np.ndarray]]:
    """(path, frame) keys in sorted order, and every other column as arrays in that same order."""
    table = pq.read_table(out / "frames")
    keys = list(zip(table.column("path").to_pylist(), table.column("frame").to_pylist(), strict=True))
    order = sorted(range(len(keys)), key=keys.__getitem__)
    cols = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if name in ("scores", "embedding"):
            arr = col.flatten().to_numpy().reshape(len(col), -1)
        else:
            arr = np.asarray(col.to_pylist(), dtype=object)
        cols[name] = arr[order]
    return [keys[i] for i in order], cols


def assert_same_rows(out: Path, reference: Path) -> None:
    """``out`` holds exactly the reference's files/ rows and frames/ rows (all columns, bit for bit)."""
    ref_files = files_rows(reference)
    # The reference itself must be the run we expect, or "equal" would prove nothing.
    status = {Path(r["path"]).name: r["status"] for r in ref_files}
    assert status == {**{n: "ok" for n in GOOD}, **{n: "error" for n in BAD}}
    assert files_rows(out) == ref_files

    keys, cols = frames_by_key(out)
    ref_keys, ref_cols = frames_by_key(reference)
    assert len(ref_keys) == sum(r["frames"] for r in ref_files) > len(GOOD)
    assert keys == ref_keys, "frames/ differ in (path, frame) rows"
    assert cols.keys() == ref_cols.keys()
    for name, ref in ref_cols.items():
        np.testing.assert_array_equal(cols[name], ref, err_msg=f"frames/{name} differs")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


class Service:
    """A server process we start and always kill (its whole process group: worker pools fork SDK workers)."""

    def __init__(self, cmd: list[str], port: int, log: Path, cwd: Path):
        self.cmd, self.port, self.log = cmd, port, log
        self._log_file = open(log, "wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Waits until the port accepts connections; fails early if the process dies."""
        import socket
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{' '.join(self.cmd)} exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                socket.create_connection(("localhost", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        pytest.fail(f"{' '.join(self.cmd)} not listening on {self.port} after {timeout_s} s")

    def stop(self) -> None:
        import signal

        try:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
        except ProcessLookupError:
            pass
        finally:
            self._log_file.close()
