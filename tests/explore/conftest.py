"""One real run over synthetic classes (tests/explore/synth.py), plus a hostile file name, per session."""

from __future__ import annotations

import shutil

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
