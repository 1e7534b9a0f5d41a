"""What Dataflow stages for ``--setup_file ./setup.py`` installs and runs on its own.

Beam's stager builds an sdist of the project (``Stager._build_setup_package``: ``python -m build --sdist
--no-isolation``, else ``python setup.py sdist``) and every worker pip-installs it. Here the same function
builds it, a fresh virtualenv that has never seen the source tree installs it (with its dependencies, from
PyPI), and the installed ``yamnet-beam`` runs the job from outside the repo: its rows must equal the
in-repo run's.
"""

import os
import subprocess
import sys
import tarfile

import pytest

from tests.support.runners import REPO, assert_same_rows, run_cli

pytestmark = pytest.mark.runners


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    from apache_beam.runners.portability.stager import Stager

    d = tmp_path_factory.mktemp("sdist")
    return Stager._build_setup_package(str(REPO / "setup.py"), str(d))


def test_sdist_holds_the_package_and_nothing_else(sdist):
    with tarfile.open(sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    modules = {n.split("/", 1)[1] for n in names if n.startswith("yamnet_beam/") and n.endswith(".py")}
    assert modules == {p.relative_to(REPO / "yamnet_beam").as_posix() for p in (REPO / "yamnet_beam").rglob("*.py")}
    assert "setup.py" in names and "pyproject.toml" in names
    for n in names:
        assert not n.startswith(("tests/", "models/", "benchmarks/", ".cache/")), n
        assert not n.endswith((".tflite", ".csv", ".parquet")), n


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, sdist):
    """A clean venv (no system site-packages), the sdist installed into it from outside the repo."""
    d = tmp_path_factory.mktemp("venv")
    venv = d / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, cwd=d, timeout=120)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", sdist],
        cwd=d, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-4000:]
    return python, env


def test_installed_sdist_runs_like_the_repo(fresh_venv, job_args, direct_output, tmp_path):
    python, env = fresh_venv
    where = subprocess.run(
        [str(python), "-c", "import yamnet_beam, apache_beam; print(yamnet_beam.__file__, apache_beam.__version__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(python.parent.parent)), where  # the venv's copy, not the source tree
    assert str(REPO) not in where
    out = tmp_path / "out"
    run_cli([*job_args(out), "--runner", "DirectRunner"], python=python, cwd=tmp_path, env=env)
    assert_same_rows(out, direct_output)
