"""Two jobs into one output: the second is refused before it writes anything, naming the job that holds it."""

from __future__ import annotations

import subprocess
import sys
import time

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

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


def test_overwrite_started_during_a_real_run_is_refused_and_the_run_stays_whole(tmp_path, model_args, capsys):
    """The measured failure: a ``--mode overwrite`` run started while another ran into the same output; both
    exited 0 and files/ said ok for rows whose frames were gone. Now the second is refused and the first's
    table is whole."""
    audio = tmp_path / "audio"
    audio.mkdir()
    t = np.arange(20 * 16000) / 16000
    for i in range(6):
        sf.write(audio / f"tone_{i}.wav", (0.3 * np.sin(2 * np.pi * (300 + 100 * i) * t)).astype(np.float32), 16000)
    out = tmp_path / "out"
    argv = ["run", "--input", str(audio), "--output", str(out), *model_args, "--part_files", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "yamnet_beam.cli", *argv], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "_lease.json").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the first run ended before the second could start"
        assert main([*argv, "--mode", "overwrite"]) == 2
        err = capsys.readouterr().err
        assert f"pid {proc.pid}" in err and "in use by yamnet-beam run" in err
        assert proc.wait(300) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    files = pq.read_table(out / "files", columns=["path", "status", "frames"])
    frames = pq.read_table(out / "frames", columns=["path"])
    assert files.column("status").to_pylist() == ["ok"] * 6
    assert frames.num_rows == sum(files.column("frames").to_pylist()) > 0  # every ok row has its frames
    assert not (out / "_lease.json").exists()
