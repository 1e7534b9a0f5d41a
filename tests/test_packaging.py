"""Packaging facts the runners rely on: the SDK container's Beam version, the console script and the extras."""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def _beam_lower_bound(requirements: list[str], extra: str | None = None) -> str:
    """The ``>=`` version of apache-beam in a requirement list (the version the project is built against)."""
    for line in requirements:
        req = Requirement(line)
        if req.name == "apache-beam" and (extra is None or extra in req.extras):
            bounds = [s.version for s in req.specifier if s.operator in (">=", "==")]
            assert len(bounds) == 1, f"{line}: expected one >= or == bound"
            return bounds[0]
    raise AssertionError(f"no apache-beam{f'[{extra}]' if extra else ''} requirement in {requirements}")


def test_docker_base_image_is_the_pinned_beam_version():
    base = re.findall(r"^FROM\s+(\S+)", _dockerfile(), flags=re.M)
    assert len(base) == 1, base
    m = re.fullmatch(r"apache/beam_python(\d+)\.(\d+)_sdk:(\S+)", base[0])
    assert m, f"base image {base[0]} is not Beam's Python SDK image"
    project = _project()
    assert m.group(3) == _beam_lower_bound(project["dependencies"])
    assert m.group(3) == _beam_lower_bound(project["optional-dependencies"]["gcp"], extra="gcp")
    # The image's Python must be one the package supports.
    minimum = Requirement(f"x{project['requires-python']}").specifier
    assert f"{m.group(1)}.{m.group(2)}" in minimum


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
