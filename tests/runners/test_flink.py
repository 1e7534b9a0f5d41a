"""FlinkRunner on a local Flink (the job server starts an embedded mini cluster: ``--flink_master=[local]``).

The job server jar comes from ``.ci/runner-tools``: Beam's own ``beam-runners-flink-<flink>-job-server`` jar
when the registry serves it at the SDK's version, else one assembled from ``beam-runners-flink-1.19:2.62.0``
(see the script and the README for why). Two environments: LOOPBACK (the SDK harness runs in the submitting
process) and PROCESS (Flink starts Beam's Python boot program per worker, which installs the ``--setup_file``
sdist staged with the job into a fresh venv: how TaskManagers without Docker run Python). The venv is built on
this interpreter's packages (``.ci/flink-cluster python-boot``), so the test passes from a virtualenv too.
"""

import json
import shutil

import pytest

from tests.support.runners import REPO, assert_same_rows, beam_version, cached_tool, python_boot, run_cli

pytestmark = pytest.mark.runners


@pytest.fixture(scope="module")
def flink_args():
    if not shutil.which("java"):
        pytest.fail("FlinkRunner needs `java` (11 or 17) on PATH")
    jar = cached_tool("flink/beam-flink-job-server.jar")
    flink_version = cached_tool("flink/FLINK_VERSION").read_text().strip()
    return [
        "--runner", "FlinkRunner",
        "--flink_master", "[local]",
        "--flink_version", flink_version,
        "--flink_job_server_jar", str(jar),
        "--parallelism", "2",
    ]  # fmt: skip


def test_flink_loopback_matches_direct(flink_args, job_args, direct_output, tmp_path):
    out = tmp_path / "out"
    run_cli([*job_args(out), *flink_args, "--environment_type", "LOOPBACK"], cwd=tmp_path)
    assert_same_rows(out, direct_output)


def test_flink_process_workers_install_staged_package(flink_args, job_args, direct_output, tmp_path):
    cached_tool(f"python-boot-{beam_version()}/boot")
    boot = python_boot(tmp_path)
    out = tmp_path / "out"
    run_cli(
        [
            *job_args(out),
            *flink_args,
            "--environment_type",
            "PROCESS",
            "--environment_config",
            json.dumps({"command": str(boot)}),
            "--setup_file",
            str(REPO / "setup.py"),
        ],  # fmt: skip
        cwd=tmp_path,
    )
    assert_same_rows(out, direct_output)
