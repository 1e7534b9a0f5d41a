"""Fixtures for the runner tests: the inputs, a DirectRunner reference run, the cached runner tools.

These tests run only with ``-m runners`` (CI: ``bash .ci/runner-tools && python3 -m pytest -m runners
tests/runners``). The tools come from ``.ci/runner-tools``; a missing tool fails the test with the command
that fetches it rather than skipping, so a green run always means the runner really ran.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.index_data import fresh_out, index_source  # noqa: F401  (the export-hoplite interop test)
from tests.support.runners import BAD, GOOD, run_cli


@pytest.fixture(scope="session")
def runner_audio(tmp_path_factory, fixtures_dir) -> Path:
    d = tmp_path_factory.mktemp("runner_audio")
    for name in GOOD + BAD:
        shutil.copy(fixtures_dir / name, d / name)
    return d


@pytest.fixture(scope="session")
def job_args(runner_audio, model_args):
    """``--input/--output/--model/--class_map`` for an output directory."""

    def make(out: Path) -> list[str]:
        return [
            "--input",
            str(runner_audio),
            "--output",
            str(out),
            *model_args,
        ]

    return make


@pytest.fixture(scope="session")
def direct_output(tmp_path_factory, job_args) -> Path:
    """The reference: the same inputs on the DirectRunner, through the same command."""
    out = tmp_path_factory.mktemp("direct") / "out"
    run_cli([*job_args(out), "--runner", "DirectRunner"], cwd=out.parent)
    return out
