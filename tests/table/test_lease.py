"""The output lease: one holder at a time, on a local disk and through fsspec (memory://), stale holders taken over."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import fsspec
import pytest

from yamnet_beam.table.lease import Lease, LeaseHeldError
from yamnet_beam.table.output import OutputDir


@pytest.fixture(params=["local", "memory"])
def output(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "out")
        return
    uri = f"memory://lease-test-{time.monotonic_ns()}/out"
    yield uri
    fs, path = fsspec.core.url_to_fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _rewrite(out: OutputDir, **changes) -> None:
    """Edits the stored lease as a dead or far-away holder would have left it."""
    doc = json.loads(out.fs.cat_file(out.path("_lease.json")))
    out.fs.pipe_file(out.path("_lease.json"), json.dumps({**doc, **changes}).encode())


def test_second_holder_is_refused_naming_the_first(output):
    first = Lease(OutputDir(output), "run")
    assert first.acquire(take_over_stale=True) is None
    second = Lease(OutputDir(output), "apply")
    for take_over in (False, True):  # a live holder is never taken over
        with pytest.raises(LeaseHeldError) as e:
            second.acquire(take_over_stale=take_over)
        msg = str(e.value)
        assert socket.gethostname() in msg and f"pid {first.holder.pid}" in msg and first.holder.started in msg
        assert "yamnet-beam run" in msg
    with pytest.raises(LeaseHeldError):
        second.check()
    first.release()
    assert second.current() is None
    assert second.acquire(take_over_stale=False) is None  # free again
    second.release()


def test_exactly_one_of_many_racing_jobs_gets_it(tmp_path):
    """On a local disk O_EXCL is atomic (memory:// checks, then creates: it stands in for object stores'
    conditional writes in the sequential tests only)."""
    output = str(tmp_path / "out")
    results: list[str] = []
    start = threading.Barrier(8)

    def take():
        lease = Lease(OutputDir(output), "run")
        start.wait()
        try:
            lease.acquire(take_over_stale=True)
            results.append("held")
        except LeaseHeldError:
            results.append("refused")

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["held"] + ["refused"] * 7


def test_a_holder_gone_from_this_host_is_taken_over_at_once(output):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)  # a pid that no longer runs
    out = OutputDir(output)
    Lease(out, "run").acquire(take_over_stale=True)
    _rewrite(out, pid=proc.pid)
    with pytest.raises(LeaseHeldError, match=rf"pid {proc.pid} is no longer running.*--mode resume"):
        Lease(out, "run").acquire(take_over_stale=False)  # --mode error does not take it over
    lease = Lease(out, "run")
    replaced = lease.acquire(take_over_stale=True)
    assert replaced is not None and replaced.pid == proc.pid
    assert lease.current() == lease.holder


def test_a_holder_elsewhere_is_stale_only_after_the_staleness_period(output):
    out = OutputDir(output)
    Lease(out, "run").acquire(take_over_stale=True)
    _rewrite(out, host="another-machine", pid=1, renewed=time.time() - 100)
    with pytest.raises(LeaseHeldError, match="another-machine"):
        Lease(out, "run", stale_s=300).acquire(take_over_stale=True)  # renewed 100 s ago: maybe alive
    replaced = Lease(out, "run", stale_s=60).acquire(take_over_stale=True)  # 100 s without renewal: lost
    assert replaced.host == "another-machine"


def test_renewal_keeps_it_fresh_and_never_writes_over_another_job(output):
    out = OutputDir(output)
    lease = Lease(out, "run", renew_s=0.05)
    lease.acquire(take_over_stale=False)
    first = lease.holder.renewed
    with lease:
        deadline = time.monotonic() + 10
        while lease.current().renewed == first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lease.current().renewed > first
        assert lease.current().token == lease.holder.token
    assert lease.current() is None  # released on exit
    other = Lease(out, "run")
    other.acquire(take_over_stale=False)
    lease.holder = other.holder.__class__(**{**other.holder.__dict__, "token": "not-ours"})
    lease.renew()
    lease.release()
    assert other.current() == other.holder  # neither renewal nor release touched the other job's lease
