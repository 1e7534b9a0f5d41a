"""Prism, Beam's Go runner (what the DirectRunner uses where it can download it), built at the SDK's version."""

import pytest

from tests.support.runners import assert_same_rows, beam_version, cached_tool, run_cli

pytestmark = pytest.mark.runners


def test_prism_runner_matches_direct(job_args, direct_output, tmp_path):
    prism = cached_tool(f"prism-{beam_version()}/prism")
    out = tmp_path / "out"
    argv = [*job_args(out), "--runner", "PrismRunner", "--prism_location", str(prism), "-v"]  # -v: Beam's INFO
    proc = run_cli(argv, cwd=tmp_path)
    assert str(prism) in proc.stderr  # Beam started our binary, not a downloaded one
    assert_same_rows(out, direct_output)
