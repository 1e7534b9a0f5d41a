"""PortableRunner against Beam's own job service, with SDK workers in separate processes (a worker pool).

This is the portability path every non-Python runner uses (job submission over gRPC, the Fn API between
runner and SDK harness), with nothing but the Python SDK: the same command works offline.
"""

import sys

import pytest

from tests.support.runners import Service, assert_same_rows, free_port, run_cli

pytestmark = pytest.mark.runners


@pytest.fixture(scope="module")
def portable_services(tmp_path_factory):
    """Beam's local job service and an SDK worker pool, on free ports, started outside the repo."""
    d = tmp_path_factory.mktemp("portable")
    job_port, pool_port = free_port(), free_port()
    services = []
    try:
        services.append(
            Service(
                [
                    sys.executable,
                    "-m",
                    "apache_beam.runners.portability.local_job_service_main",
                    "--port",
                    str(job_port),
                ],
                job_port,
                d / "job_service.log",
                d,
            )
        )
        services.append(
            Service(
                [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", "--service_port", str(pool_port)],
                pool_port,
                d / "worker_pool.log",
                d,
            )
        )
        for s in services:
            s.wait_ready()
        yield {"job_endpoint": f"localhost:{job_port}", "worker_pool": f"localhost:{pool_port}", "dir": d}
    finally:
        for s in services:
            s.stop()


def test_portable_runner_external_workers_match_direct(portable_services, job_args, direct_output, tmp_path):
    out = tmp_path / "out"
    run_cli(
        [
            *job_args(out),
            "--runner",
            "PortableRunner",
            "--job_endpoint",
            portable_services["job_endpoint"],
            "--environment_type",
            "EXTERNAL",
            "--environment_config",
            portable_services["worker_pool"],
        ],
        cwd=tmp_path,
    )
    assert_same_rows(out, direct_output)
    # The work really ran in the pool's worker processes, not in the submitting process.
    pool_log = (portable_services["dir"] / "worker_pool.log").read_text()
    assert "Starting worker" in pool_log and "bad_truncated.flac" in pool_log
