"""Packaging facts the runners rely on: the SDK container's Beam version, the console script and the extras."""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def _lock() -> dict[str, str]:
    """``requirements/lock.txt`` as ``{name: version}`` (names normalised)."""
    pins = {}
    for line in (REPO / "requirements" / "lock.txt").read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            name, _, version = line.split(";")[0].strip().partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def _requirements() -> list[tuple[str, Requirement]]:
    """Every requirement of the package and its extras, with where it comes from."""
    project = _project()
    reqs = [("dependencies", Requirement(r)) for r in project["dependencies"]]
    for extra, lines in project["optional-dependencies"].items():
        reqs += [(f"[{extra}]", Requirement(r)) for r in lines]
    return reqs


def test_every_requirement_has_a_tested_lower_bound():
    """The policy: a lower bound on everything (CI runs the suite at --resolution lowest-direct)."""
    for where, req in _requirements():
        if req.marker is not None and not req.marker.evaluate({"python_version": "3.11"}):
            continue  # not installed where CI tests
        assert any(s.operator in (">=", "==") for s in req.specifier), f"{where}: {req} has no lower bound"


@pytest.mark.parametrize("name", ["apache-beam", "ai-edge-litert"])
def test_fast_moving_dependencies_are_bounded_above(name):
    """Beam's and LiteRT's minor releases change behaviour: a fresh install must not pick an untested one."""
    for where, req in _requirements():
        if canonicalize_name(req.name) == name:
            assert any(s.operator in ("<", "<=", "==") for s in req.specifier), f"{where}: {req} has no upper bound"


def test_the_lock_satisfies_every_bound():
    lock = _lock()
    for where, req in _requirements():
        name = canonicalize_name(req.name)
        if req.marker is not None and not req.marker.evaluate({"python_version": "3.11"}):
            continue
        assert name in lock, f"{where}: {req.name} is not in requirements/lock.txt: run bash requirements/lock.sh"
        assert req.specifier.contains(lock[name], prereleases=True), f"{where}: lock has {name}=={lock[name]}"


def test_docker_base_image_is_the_locked_beam_version():
    base = re.findall(r"^FROM\s+(\S+)", _dockerfile(), flags=re.M)
    assert len(base) == 1, base
    m = re.fullmatch(r"apache/beam_python(\d+)\.(\d+)_sdk:(\S+)", base[0])
    assert m, f"base image {base[0]} is not Beam's Python SDK image"
    assert m.group(3) == _lock()["apache-beam"]
    # The image's Python must be one the package supports.
    minimum = Requirement(f"x{_project()['requires-python']}").specifier
    assert f"{m.group(1)}.{m.group(2)}" in minimum
    assert "-c requirements/lock.txt" in _dockerfile(), "the image installs the lock's versions"


def test_docker_installs_existing_extras_and_files():
    text = _dockerfile()
    installs = re.findall(r"pip install[^\n]*?\"\.\[([^\]]*)\]\"", text)
    assert installs, "the Dockerfile should pip install the package with extras"
    extras = {e.strip() for group in installs for e in group.split(",")}
    assert {"av", "gcp"} <= extras
    assert extras <= set(_project()["optional-dependencies"])
    for line in re.findall(r"^COPY\s+(.+)$", text, flags=re.M):
        for src in shlex.split(line)[:-1]:
            assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"
            assert src in (REPO / ".dockerignore").read_text(), f".dockerignore must let {src} through"


def test_console_script_points_at_a_callable():
    scripts = _project()["scripts"]
    assert "yamnet-beam" in scripts
    module, _, attr = scripts["yamnet-beam"].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_setup_py_defers_to_pyproject():
    """Dataflow stages with ``--setup_file ./setup.py``: it must build the same distribution as pyproject."""
    out = subprocess.run(
        [sys.executable, "setup.py", "--name", "--version"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    project = _project()
    assert out[-2:] == [project["name"], project["version"]]


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"```bash\n(python3 -m venv \.venv[^\n]*)\n```", readme)
    assert len(commands) == 2, "the Quick start has exactly two commands: install + demo, install + tests"
    install_and_demo, install_and_test = commands
    assert install_and_demo.endswith("&& yamnet-beam demo") and "-c requirements/lock.txt" in install_and_demo
    assert install_and_test.endswith("&& python -m pytest") and "-c requirements/lock.txt" in install_and_test
    assert install_and_test in (REPO / ".ci" / "run").read_text()
