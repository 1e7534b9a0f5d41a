"""FlinkRunner on a real Flink session cluster on this machine, submitted as a user submits to a cluster.

``.ci/flink-cluster`` starts a JobManager (REST on a free loopback port) and separate TaskManager JVMs from
the Flink 1.19 jars ``.ci/runner-tools`` resolved; the job goes in with ``--flink_master localhost:PORT``
through Beam's Flink job server. Two environments: PROCESS (each TaskManager starts Beam's boot program,
which installs the staged ``--setup_file`` sdist; the cluster's ``python-boot`` wrapper gives every SDK
process its own venv and staging directory) and EXTERNAL (a Beam worker pool beside the TaskManager).
Faults: a TaskManager SIGKILLed mid-job (Flink restarts the job on the spare slots; parts are idempotent),
and the launcher (``yamnet-beam`` + its job server) SIGKILLed mid-job, then ``--mode resume``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.support.runners import (
    REPO,
    RUN_TIMEOUT_S,
    Service,
    assert_same_rows,
    cached_tool,
    cli,
    files_rows,
    frames_by_key,
    free_port,
    run_cli,
)

pytestmark = pytest.mark.runners

SCRIPT = REPO / ".ci" / "flink-cluster"
# Fault-injection inputs: copies of four speech fixtures (6-10 s each, 16-96 kHz, WAV and FLAC), one per part
# with --part_files 1, so parts are committed one by one while the job runs.
FAULT_SOURCES = ["speech_16k_float32.wav", "speech_48k_stereo.flac", "speech_22k_mono.wav", "speech_96k_24bit.wav"]
FAULT_COPIES = 8

# Beam's worker pool servicer on 127.0.0.1 only (`worker_pool_main` always binds [::]). Its SDK workers are
# started as `python ...` from PATH (see NOTES), so this interpreter's directory goes first on PATH.
POOL_CODE = """
import os, sys, logging, grpc
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
from apache_beam.portability.api import beam_fn_api_pb2_grpc
from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer
from apache_beam.utils import thread_pool_executor
logging.basicConfig(level=logging.INFO, force=True)
server = grpc.server(thread_pool_executor.shared_unbounded_instance())
server.add_insecure_port("127.0.0.1:%d" % int(sys.argv[1]))
servicer = BeamFnExternalWorkerPoolServicer(use_process=True)
beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(servicer, server)
server.start()
server.wait_for_termination()
"""


class Cluster:
    """A cluster started by ``.ci/flink-cluster`` in ``dir``; stopped by the PIDs the script recorded."""

    def __init__(self, directory: Path, taskmanagers: int, slots: int):
        self.dir, self.taskmanagers, self.slots = directory, taskmanagers, slots
        self._script("start", str(directory), "--taskmanagers", str(taskmanagers), "--slots", str(slots), timeout=240)
        self.master = (directory / "master").read_text().strip()
        self.rest = f"http://127.0.0.1:{(directory / 'rest_port').read_text().strip()}"

    def _script(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run(
            ["bash", str(SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHON": sys.executable},  # PROCESS workers get this interpreter's packages
        )
        if proc.returncode != 0:
            pytest.fail(
                f"flink-cluster {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-6000:]}"
            )
        return proc.stdout

    def stop(self) -> None:
        self._script("stop", str(self.dir))

    def kill_tm(self, i: int) -> None:
        self._script("kill-tm", str(self.dir), str(i))

    def restore_tm(self, i: int) -> None:
        """Restarts TaskManager ``i`` and waits until all TaskManagers and slots are registered again."""
        self._script("start-tm", str(self.dir), str(i))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            o = self.get("/overview")
            if o["taskmanagers"] >= self.taskmanagers and o["slots-available"] >= self.taskmanagers * self.slots:
                return
            time.sleep(0.5)
        pytest.fail(f"TaskManager {i} did not re-register: {self.get('/overview')}")

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.rest + path, timeout=10) as r:
            return json.load(r)

    def jobs(self) -> list[dict]:
        """Jobs the cluster ran, oldest first."""
        return sorted(self.get("/jobs/overview")["jobs"], key=lambda j: j["start-time"])

    def running_job(self, timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            running = [j["jid"] for j in self.jobs() if j["state"] == "RUNNING"]
            if running:
                return running[-1]
            time.sleep(0.2)
        pytest.fail(f"no job RUNNING on the cluster after {timeout_s} s: {self.jobs()}")

    def busy_taskmanagers(self, jid: str, step: str) -> list[int]:
        """Indexes of the TaskManagers running a subtask of the job's vertex whose name contains ``step``.

        Flink names a chain of fused Beam transforms after its members and may cut a long name short, so when
        no vertex names ``step``, the TaskManagers running any subtask of the job are returned: killing one of
        them fails running tasks all the same (the caller checks that a failure was handled)."""
        vertices = self.get(f"/jobs/{jid}")["vertices"]
        named = [v for v in vertices if step in v["name"]] or vertices
        busy = set()
        for v in named:
            tms = self.get(f"/jobs/{jid}/vertices/{v['id']}/taskmanagers")["taskmanagers"]
            busy |= {int(t["taskmanager-id"].removeprefix("tm-")) for t in tms if t["status-counts"]["RUNNING"]}
        return sorted(busy)

    def failures(self, jid: str) -> list[str]:
        """First lines of the job's failures that Flink handled (kept after the job ends, unlike its metrics)."""
        entries = self.get(f"/jobs/{jid}/exceptions")["exceptionHistory"]["entries"]
        return [e["stacktrace"].splitlines()[0] for e in entries]

    def cancel(self, jid: str, timeout_s: float = 60) -> str:
        urllib.request.urlopen(
            urllib.request.Request(f"{self.rest}/jobs/{jid}?mode=cancel", method="PATCH"), timeout=10
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.get(f"/jobs/{jid}")["state"]
            if state in ("CANCELED", "FAILED", "FINISHED"):
                return state
            time.sleep(0.2)
        pytest.fail(f"job {jid} not cancelled after {timeout_s} s")

    def tm_log(self, i: int) -> str:
        return (self.dir / "log" / f"taskmanager-{i}.log").read_text(errors="replace")


def _require_tools() -> None:
    if not shutil.which("java"):
        pytest.fail("the Flink cluster needs `java` (11 or 17) on PATH")
    cached_tool("flink/lib")
    cached_tool("flink/beam-flink-job-server.jar")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two TaskManagers with two slots each: parallelism 2 fits on one, so one can die."""
    _require_tools()
    c = Cluster(tmp_path_factory.mktemp("flink-cluster"), taskmanagers=2, slots=2)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def pool_cluster(tmp_path_factory):
    """One TaskManager with a Beam worker pool beside it (the sidecar layout: one pool per TaskManager); one
    test uses it, so it is stopped right after (not alive beside the other cluster during the fault tests).

    Not two TaskManagers sharing one pool: each TaskManager numbers its SDK workers from "1-1", the pool keeps
    its workers by that id, so one TaskManager's StopWorker would end the other's worker (measured: two
    StartWorker 1-1, one StopWorker 1-1 that found the other TaskManager's process).
    """
    _require_tools()
    d = tmp_path_factory.mktemp("flink-pool-cluster")
    c = Cluster(d, taskmanagers=1, slots=2)
    port = free_port()
    pool = Service([sys.executable, "-c", POOL_CODE, str(port)], port, d / "worker_pool.log", d)
    try:
        pool.wait_ready()
        yield c, port, d / "worker_pool.log"
    finally:
        pool.stop()
        c.stop()


def flink_args(c: Cluster) -> list[str]:
    jar = cached_tool("flink/beam-flink-job-server.jar")
    flink_version = cached_tool("flink/FLINK_VERSION").read_text().strip()
    return [
        "--runner", "FlinkRunner",
        "--flink_master", c.master,
        "--flink_version", flink_version,
        "--flink_job_server_jar", str(jar),
        "--parallelism", "2",
    ]  # fmt: skip


def process_args(c: Cluster) -> list[str]:
    boot = c.dir / "python-boot"
    if not boot.is_file():
        pytest.fail(f"{boot} is missing: run `bash .ci/runner-tools` (it builds Beam's boot program) and restart")
    return [
        "--environment_type", "PROCESS",
        "--environment_config", json.dumps({"command": str(boot)}),
        "--setup_file", str(REPO / "setup.py"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def fault_audio(tmp_path_factory, fixtures_dir) -> Path:
    d = tmp_path_factory.mktemp("fault_audio")
    for name in FAULT_SOURCES:
        for i in range(FAULT_COPIES):
            shutil.copy(fixtures_dir / name, d / f"copy{i:02d}_{name}")
    return d


@pytest.fixture(scope="module")
def fault_args(fault_audio, model_args):
    def make(out: Path) -> list[str]:
        return ["--input", str(fault_audio), "--output", str(out), *model_args, "--part_files", "1"]

    return make


@pytest.fixture(scope="module")
def fault_reference(tmp_path_factory, fault_args) -> Path:
    """The fault inputs on the DirectRunner, uninterrupted."""
    out = tmp_path_factory.mktemp("fault_direct") / "out"
    run_cli([*fault_args(out), "--runner", "DirectRunner"], cwd=out.parent)
    return out


def assert_same_table_rows(out: Path, reference: Path) -> None:
    """Every files/ and frames/ row of ``reference`` and no other, all columns equal."""
    ref_files = files_rows(reference)
    assert len(ref_files) == len(FAULT_SOURCES) * FAULT_COPIES and {r["status"] for r in ref_files} == {"ok"}
    assert files_rows(out) == ref_files
    keys, cols = frames_by_key(out)
    ref_keys, ref_cols = frames_by_key(reference)
    assert len(ref_keys) == sum(r["frames"] for r in ref_files) > 0
    assert keys == ref_keys, "frames/ differ in (path, frame) rows"
    for name, ref in ref_cols.items():
        np.testing.assert_array_equal(cols[name], ref, err_msg=f"frames/{name} differs")


def committed_parts(out: Path) -> list[Path]:
    return sorted((out / "files").glob("*.parquet")) if (out / "files").is_dir() else []


class Launch:
    """``yamnet-beam run`` in its own session (it and the job server it starts can be killed together)."""

    def __init__(self, argv: list[str], cwd: Path):
        self.log_path = cwd / "launcher.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [cli(), "run", *argv],
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_for_first_part(self, out: Path, timeout_s: float = RUN_TIMEOUT_S) -> int:
        """Polls until a part is committed; returns how many are then. Fails if the run ends first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            n = len(committed_parts(out))
            if n:
                return n
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended (exit {self.proc.returncode}) before a part was committed:\n{self.tail()}")
            time.sleep(0.02)
        pytest.fail(f"no part committed after {timeout_s} s:\n{self.tail()}")

    def wait(self, timeout_s: float = RUN_TIMEOUT_S) -> int:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the run did not finish in {timeout_s} s:\n{self.tail()}")

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self._log.close()


def test_cluster_process_environment_matches_direct(cluster, job_args, direct_output, tmp_path):
    out = tmp_path / "out"
    n_jobs = len(cluster.jobs())
    run_cli([*job_args(out), *flink_args(cluster), *process_args(cluster)], cwd=tmp_path)
    assert_same_rows(out, direct_output)
    # It ran on the cluster, and both TaskManagers started SDK harnesses through the boot wrapper.
    jobs = cluster.jobs()
    assert len(jobs) == n_jobs + 1 and jobs[-1]["state"] == "FINISHED"
    for i in range(cluster.taskmanagers):
        assert f"Attempting to start process with command: [{cluster.dir / 'python-boot'}" in cluster.tm_log(i)


def test_cluster_external_worker_pool_matches_direct(pool_cluster, job_args, direct_output, tmp_path):
    c, port, pool_log = pool_cluster
    out = tmp_path / "out"
    run_cli(
        [*job_args(out), *flink_args(c), "--environment_type", "EXTERNAL", "--environment_config", f"localhost:{port}"],
        cwd=tmp_path,
    )
    assert_same_rows(out, direct_output)
    assert c.jobs()[-1]["state"] == "FINISHED"
    assert "Starting worker" in pool_log.read_text(), "the pool started no SDK worker"


def test_taskmanager_killed_mid_job_recovers(cluster, fault_args, fault_reference, tmp_path):
    """SIGKILL of a TaskManager with parts committed and parts to go: Flink restarts the job on the other
    TaskManager's slots (fixed-delay, 3 attempts) and the run finishes with the uninterrupted run's rows."""
    out = tmp_path / "out"
    total = len(FAULT_SOURCES) * FAULT_COPIES
    launch = Launch([*fault_args(out), *flink_args(cluster), *process_args(cluster)], tmp_path)
    victim = None
    try:
        at_kill = launch.wait_for_first_part(out)
        jid = cluster.running_job()
        busy = cluster.busy_taskmanagers(jid, "EmbedAndCommit")
        assert busy, "no TaskManager is running the embedding step"
        victim = busy[0]
        cluster.kill_tm(victim)
        assert at_kill < total, "every part was committed before the kill: use more inputs"
        rc = launch.wait()
        assert rc == 0, f"the run failed after the TaskManager was killed:\n{launch.tail()}"
        assert cluster.get(f"/jobs/{jid}")["state"] == "FINISHED"
        assert cluster.failures(jid), "no failure was handled: the kill came too late to matter"
        assert_same_table_rows(out, fault_reference)
    finally:
        launch.close()
        if victim is not None:  # later tests get both TaskManagers (and the killed one's SDK harness is reaped)
            cluster.restore_tm(victim)


def test_launcher_killed_mid_job_then_resume(cluster, fault_args, fault_reference, tmp_path):
    """SIGKILL of the submitting process and its job server: the job lives on in the session cluster (as
    it would after a laptop goes away); once it is cancelled, `--mode resume` keeps the committed parts
    as they are and adds the rest, giving the uninterrupted run's rows."""
    out = tmp_path / "out"
    argv = [*fault_args(out), *flink_args(cluster), *process_args(cluster)]
    n_jobs = len(cluster.jobs())
    launch = Launch(argv, tmp_path)
    try:
        launch.wait_for_first_part(out)
        launch.kill()
    finally:
        launch.close()
    jobs = cluster.jobs()
    assert len(jobs) == n_jobs + 1
    assert jobs[-1]["state"] == "RUNNING", "the cluster job should outlive its launcher"
    assert cluster.cancel(jobs[-1]["jid"]) == "CANCELED"
    kept = {p.name: p.stat().st_mtime_ns for p in committed_parts(out)}
    assert 0 < len(kept) < len(FAULT_SOURCES) * FAULT_COPIES, "the cancel should leave parts to do"

    proc = run_cli([*argv, "--mode", "resume"], cwd=tmp_path)
    assert f"{len(kept)} already done" in proc.stdout
    assert_same_table_rows(out, fault_reference)
    assert {p.name: p.stat().st_mtime_ns for p in committed_parts(out) if p.name in kept} == kept
    assert not (out / "_tmp").exists() or not any((out / "_tmp").iterdir())
