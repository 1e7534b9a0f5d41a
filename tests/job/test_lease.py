"""Two jobs into one output: the second is refused before it writes anything, naming the job that holds it."""

from __future__ import annotations

import time

import fsspec
import pytest

from yamnet_beam.cli import main
from yamnet_beam.table.lease import Lease
from yamnet_beam.table.output import OutputDir


@pytest.fixture(params=["local", "memory"])
def output(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "out")
        return
    uri = f"memory://run-lease-{time.monotonic_ns()}/out"
    yield uri
    fs, path = fsspec.core.url_to_fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _everything(out: OutputDir) -> list[str]:
    return sorted(p[len(out.root) + 1 :] for p in out.fs.find(out.root))


@pytest.mark.parametrize("mode", ["error", "resume", "overwrite"])
def test_a_run_into_an_output_in_use_exits_2_naming_the_holder(output, mode, fixtures_dir, model_args, capsys):
    out = OutputDir(output)
    holder = Lease(out, "run")
    holder.acquire(take_over_stale=False)  # a live job (this process) holds the output
    before = _everything(out)
    argv = ["run", "--input", str(fixtures_dir / "tone_1khz_16k.wav"), "--output", output, "--mode", mode]
    assert main([*argv, *model_args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line that says what to do
    h = holder.holder
    assert f"host {h.host}" in err[0] and f"pid {h.pid}" in err[0] and f"started {h.started}" in err[0]
    assert "choose another --output" in err[0]
    assert _everything(out) == before == ["_lease.json"]  # nothing written, nothing removed
    assert holder.current() == h  # the holder's lease untouched
    holder.release()
