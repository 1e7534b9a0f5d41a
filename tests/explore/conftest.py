"""One real run over synthetic classes (tests/explore/synth.py), plus a hostile file name, per session."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.explore.synth import make_audio
from yamnet_beam.job.pipeline import run

HOSTILE = "<img src=x onerror=\"document.title='pwned'\">&amp;.wav"


@pytest.fixture(scope="session")
def synth(tmp_path_factory, model_args):
    audio = tmp_path_factory.mktemp("explore_audio")
    truth = make_audio(audio)
    shutil.copy(audio / "noise_0.wav", audio / HOSTILE)
    truth[HOSTILE] = "noise"
    (audio / "broken.wav").write_bytes(b"not audio")
    out = tmp_path_factory.mktemp("explore_out") / "out"
    run(["--input", str(audio), "--output", str(out), *model_args])
    return {"audio": audio, "out": out, "truth": {str(audio / k): v for k, v in truth.items()}}


@pytest.fixture
def fresh_out(synth, tmp_path):
    """A copy of the output, so labels written by one test do not reach another."""
    dest = tmp_path / "out"
    shutil.copytree(synth["out"], dest, ignore=shutil.ignore_patterns("labels", "_similar_cache"))
    return dest


def _interruptible() -> None:
    """In the child: Ctrl-C as a terminal delivers it, whatever the test process inherited (an ignored SIGINT
    is inherited across exec, and Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def start_explorer(*args: str) -> subprocess.Popen:
    """``yamnet-beam explore ARGS`` as a process that Ctrl-C stops; stop it with :func:`stop_explorer`."""
    return subprocess.Popen(
        [sys.executable, "-m", "yamnet_beam.cli", "explore", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,
    )


def stop_explorer(proc: subprocess.Popen) -> tuple[int, str]:
    """Ctrl-C by its PID (SIGKILL if it does not stop); its exit code and stderr."""
    os.kill(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, err
