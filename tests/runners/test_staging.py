"""What Dataflow stages for ``--setup_file ./setup.py`` installs and runs on its own.

Beam's stager builds an sdist of the project (``Stager._build_setup_package``: ``python -m build --sdist
--no-isolation``, else ``python setup.py sdist``) and every worker pip-installs it. Here the same function
builds it, a fresh virtualenv that has never seen the source tree installs it as Beam's boot program does
(first the requirements file the job stages: the launcher's versions of Beam, LiteRT, numpy, pyarrow and soxr;
then the sdist, with its other dependencies from PyPI), and the installed ``yamnet-beam`` runs the job from
outside the repo: its rows must equal the in-repo run's, on the launcher's versions.
"""

import json
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
def staged_requirements() -> str:
    """The requirements file ``run --setup_file`` stages: the launcher's versions of what decides the rows."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from yamnet_beam.job.staging import pin_worker_versions
    from yamnet_beam.versions import installed

    path = pin_worker_versions(PipelineOptions(["--setup_file", str(REPO / "setup.py")]), installed())
    assert path is not None
    return path


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, sdist, staged_requirements):
    """A clean venv (no system site-packages): the staged requirements, then the sdist, from outside the repo."""
    d = tmp_path_factory.mktemp("venv")
    venv = d / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, cwd=d, timeout=120)
    python = venv / "bin" / "python"
    for args in (["-r", staged_requirements], [sdist]):
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
            cwd=d, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert pip.returncode == 0, pip.stderr[-4000:]
    return python, env


def test_staged_workers_get_the_launchers_versions(fresh_venv, tmp_path):
    from yamnet_beam.versions import PINNED, installed

    python, env = fresh_venv
    code = "import json, importlib.metadata as m, sys; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    worker = subprocess.run(
        [str(python), "-c", code, *PINNED], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(worker) == installed()


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
