"""The versions launcher and workers must share: read from the installed distributions, pinned, compared."""

from __future__ import annotations

import apache_beam
import numpy
import pyarrow
import pytest

from yamnet_beam import versions


def test_installed_reads_what_the_modules_report():
    got = versions.installed()
    assert list(got) == list(versions.PINNED)
    assert got["apache-beam"] == apache_beam.__version__
    assert got["numpy"] == numpy.__version__
    assert got["pyarrow"] == pyarrow.__version__
    assert versions.installed(["no-such-distribution-x"]) == {"no-such-distribution-x": "not installed"}


PINS = {"apache-beam": "2.78.0", "numpy": "2.4.6"}


@pytest.mark.parametrize(
    "user, expected",
    [
        ("", "apache-beam==2.78.0\nnumpy==2.4.6\n"),
        ("duckdb>=1.1\n# a comment\n", "duckdb>=1.1\n# a comment\napache-beam==2.78.0\nnumpy==2.4.6\n"),
        ("Apache_Beam == 2.78.0\nscipy\n", "scipy\napache-beam==2.78.0\nnumpy==2.4.6\n"),  # the same pin, spelt freely
        ("apache-beam[gcp]==2.78.0\n", "apache-beam[gcp]==2.78.0\napache-beam==2.78.0\nnumpy==2.4.6\n"),
    ],
    ids=["nothing", "other-packages", "same-pin", "same-pin-with-extras"],
)
def test_worker_requirements_add_the_pins(user, expected):
    assert versions.worker_requirements(PINS, user) == expected


@pytest.mark.parametrize("line", ["apache-beam==2.77.0", "numpy>=1.26", "NumPy", "apache_beam[gcp]==2.78.1"])
def test_a_requirements_line_that_contradicts_a_pin_is_refused(line):
    with pytest.raises(ValueError, match=r"differs from this launcher's (apache-beam==2\.78\.0|numpy==2\.4\.6)"):
        versions.worker_requirements(PINS, f"scipy\n{line}\n")


def test_check_worker_passes_on_the_same_versions():
    versions.check_worker(versions.installed())


def test_check_worker_names_both_versions():
    here = versions.installed()
    with pytest.raises(versions.VersionMismatchError) as e:
        versions.check_worker({**here, "numpy": "1.0.0", "apache-beam": "2.0.0"})
    msg = str(e.value)
    assert f"numpy {numpy.__version__} (launcher 1.0.0)" in msg
    assert f"apache-beam {apache_beam.__version__} (launcher 2.0.0)" in msg
    assert "pyarrow" not in msg and len(msg.splitlines()) == 1


@pytest.mark.parametrize("argv", [["version"], ["--version"]])
def test_version_command_prints_what_a_bug_report_needs(argv, model_path, tmp_path):
    import os
    import subprocess
    import sys

    import yamnet_beam

    env = {**os.environ, "YAMNET_BEAM_MODEL": str(model_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "yamnet_beam.cli", *argv], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"yamnet-beam {yamnet_beam.__version__}"
    assert f"apache-beam {apache_beam.__version__}" in lines and f"pyarrow {pyarrow.__version__}" in lines
    assert f"model: {model_path}" in lines
    extras = next(x for x in lines if x.startswith("extras: "))
    assert "query" in extras  # duckdb is installed with the dev extra
    assert proc.stderr == ""
