"""Every command of the README's table, with --help and with a typical invocation, in a fresh process: what
reaches stderr is the command's own (no third-party INFO/WARNING, no LiteRT delegate line); -v shows the rest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from yamnet_beam.cli.grammar import COMMANDS
from yamnet_beam.demo import make_labelled_audio

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "yamnet_beam.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def foreign_lines(stderr: str) -> list[str]:
    """Lines on stderr that the command did not write itself (ours all start with "yamnet-beam: ")."""
    return [line for line in stderr.splitlines() if not line.startswith("yamnet-beam: ")]


def readme_table() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Commands") : text.index("## Options")]
    return re.findall(r"^\| `([\w-]+)` \| `(yamnet-beam [^`]*)` \|", section, re.M)


def test_readme_table_is_the_command_table():
    assert readme_table() == [(name, f"yamnet-beam {usage}") for name, usage, _ in COMMANDS]


@pytest.fixture(scope="module")
def work(tmp_path_factory, model_path: Path, class_map_path: Path) -> Path:
    d = tmp_path_factory.mktemp("quiet")
    make_labelled_audio(d / "labelled")
    res = cli("run", "--input", "labelled", "--output", "out", "--model", str(model_path), cwd=d)
    assert res.returncode == 0, res.stderr
    return d


def typical(model: Path, class_map: Path, elsewhere: Path) -> dict[str, list[list[str]]]:
    """A typical invocation of each command; ``elsewhere`` is audio not in the output (embedded now)."""
    m = str(model)
    return {
        "run": [
            [
                "run",
                "--input",
                "labelled",
                "--output",
                "out_mp",
                "--model",
                m,
                "--hop_s",
                "0.96",
                "--direct_running_mode=multi_processing",
                "--direct_num_workers=2",
            ],
        ],  # fmt: skip
        "demo": [["demo", "--model", m, "--input", "demo_audio", "--output", "demo_out"]],
        "download": [["download", "-o", "models", "--model_url", m, "--class_map_url", str(class_map)]],
        "version": [["version"]],
        "query": [
            ["query", "out", "summary"],
            ["query", "out", "top", "--top", "2", "--path", "*tone*"],
            ["query", "out", "events", "--class", "Sine wave", "--min_duration_s", "1"],
            ["query", "out", "similar", "--to", f"{elsewhere}:1.0", "--top", "3", "--no_cache"],
        ],
        "pool": [["pool", "out"]],
        "plot": [["plot", "out", "--path", "*/tone_0.wav", "-o", "tone.png"]],
        "report": [["report", "out", "-o", "report.html", "--sample", "1"]],
        "train": [["train", "out", "--labels", "labelled/labels.csv", "-o", "head"]],
        "apply": [["apply", "out", "--head", "head"]],
        "export": [["export", "--head", "head", "-o", "head.tflite"]],
        "index": [["index", "out"], ["query", "out", "similar", "--to", "labelled/tone_0.wav:2", "--top", "3"]],
        "export-hoplite": [["export-hoplite", "out", "-o", "hoplite_db"]],
        "explore": [],  # a server until Ctrl-C: tests/explore drives it
    }


def test_every_command_prints_only_its_own_lines(work, model_path, class_map_path, fixtures_dir):
    invocations = typical(model_path, class_map_path, fixtures_dir / "speech_16k_float32.wav")
    assert sorted(invocations) == sorted(name for name, _, _ in COMMANDS)
    for name, _, _ in COMMANDS:
        res = cli(name, "--help", cwd=work)
        assert res.returncode == 0 and res.stderr == "" and "usage: yamnet-beam" in res.stdout, (name, res.stderr)
        for args in invocations[name]:
            res = cli(*args, cwd=work)
            assert res.returncode == 0, (args, res.stderr[-3000:])
            assert foreign_lines(res.stderr) == [], (args, res.stderr[-3000:])
    assert (work / "head.tflite").is_file() and (work / "out" / "heads" / "head").is_dir()


def test_verbose_shows_what_the_default_hides(work, fixtures_dir):
    elsewhere = fixtures_dir / "speech_16k_float32.wav"  # not in the output: embedded now, by LiteRT
    args = ["query", "out", "similar", "--to", f"{elsewhere}:1.0", "--top", "1", "--no_cache"]
    assert "XNNPACK" not in cli(*args, cwd=work).stderr
    assert "Created TensorFlow Lite XNNPACK delegate" in cli("-v", *args, cwd=work).stderr
