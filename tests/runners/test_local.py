"""The DirectRunner across local processes (``multi_processing``): the laptop's way to use every core."""

import pytest

from tests.support.runners import assert_same_rows, run_cli

pytestmark = pytest.mark.runners


def test_direct_multi_processing_matches_in_process(job_args, direct_output, tmp_path):
    out = tmp_path / "out"
    run_cli(
        [*job_args(out), "--runner", "DirectRunner", "--direct_running_mode", "multi_processing",
         "--direct_num_workers", "2"],
        cwd=tmp_path,
    )  # fmt: skip
    assert_same_rows(out, direct_output)
