"""The command line as a contract, driven as a user drives it (a fresh process): a typo ends the command with
exit 2 and one line naming the flag and its nearest spelling; Ctrl-C ends it with exit 130 and the command that
finishes the job; the demo runs offline with --model; earlier spellings work and say the new one."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.support.helpers import interrupt_cli
from yamnet_beam.model.download import NOT_FOUND_HINT, OFFLINE_HINT

REPO = Path(__file__).resolve().parents[1]
PIPELINE_SCRIPT = REPO / "pipelines" / "yamnet_to_parquet.py"


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``yamnet-beam ARGS`` in a new process (this checkout's package), as typed in a shell."""
    return subprocess.run(
        [sys.executable, "-m", "yamnet_beam.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=timeout,
    )


def one_error(res: subprocess.CompletedProcess) -> str:
    """The single line a user error prints (exit 2), without its prefix."""
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("yamnet-beam: error: "), res.stderr
    assert len(lines[0]) < 250, lines[0]
    return lines[0].removeprefix("yamnet-beam: error: ")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--hop_second", "0.5"], "unknown option --hop_second: did you mean --hop_s?"),
        (["--ouptut", "o1"], "unknown option --ouptut: did you mean --output?"),
        (["--runer=DirectRunner"], "unknown option --runer: did you mean --runner?"),
        (["--direct_num_worker", "2"], "unknown option --direct_num_worker: did you mean --direct_num_workers?"),
        (["--mode", "resum"], "argument --mode: invalid choice: 'resum' (choose from 'error', 'overwrite', 'resume')"),
        (["in.wav"], "unexpected argument 'in.wav': every value follows its flag (see yamnet-beam run --help)"),
    ],
)
def test_run_refuses_an_unknown_option_before_any_work(tmp_path, fixtures_dir, model_path, args, expected):
    wav = str(fixtures_dir / "tone_1khz_16k.wav")
    res = cli("run", "--input", wav, "--output", "out", "--model", str(model_path), *args, cwd=tmp_path)
    assert one_error(res) == expected
    assert not (tmp_path / "out").exists()  # nothing written, no manifest recording the typo


def test_every_command_that_passes_options_to_beam_refuses_a_typo(tmp_path, fixtures_dir, model_path):
    wav = str(fixtures_dir / "tone_1khz_16k.wav")
    expected = "unknown option --hop_second: did you mean --hop_s?"
    res = cli("demo", "--model", str(model_path), "--hop_second", "0.5", cwd=tmp_path)
    assert one_error(res) == expected
    assert not (tmp_path / "demo_audio").exists() and not (tmp_path / "demo_output").exists()
    res = subprocess.run(
        [sys.executable, str(PIPELINE_SCRIPT), "--input", wav, "--output", "o", "--hop_second", "0.5"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert one_error(res) == expected and not (tmp_path / "o").exists()
    # apply takes Beam's options only: the job's own flags are not its own
    res = cli("apply", "no_output", "--head", "no_head", "--runer", "DirectRunner", cwd=tmp_path)
    assert one_error(res) == "unknown option --runer: did you mean --runner?"
    res = cli("apply", "no_output", "--head", "no_head", "--hop_s", "0.5", cwd=tmp_path)
    assert one_error(res) == "unknown option --hop_s: see yamnet-beam apply --help"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["query", "o", "top", "--pth", "*"], "unknown option --pth: did you mean --path?"),
        (["query", "o", "events", "--class", "Speech", "--min_duraton_s", "1"], "unknown option --min_duraton_s: "),
        (["plot", "o", "--path", "a.wav", "-o", "p.png", "--treshold", "0.3"], "unknown option --treshold: "),
        (["train", "o", "--labels", "l.csv", "-o", "h", "--fold", "3"], "unknown option --fold: did you mean --folds?"),
        (["querry", "o", "top"], "argument COMMAND: invalid choice: 'querry'"),
    ],
)
def test_other_commands_refuse_a_typo_in_one_line(tmp_path, args, expected):
    assert one_error(cli(*args, cwd=tmp_path)).startswith(expected)


def test_deprecated_spellings_still_work_and_say_the_new_one(tmp_path, fixtures_dir, model_path, class_map_path):
    src = fixtures_dir / "tone_1khz_16k.wav"
    res = cli(
        "run", "--input", str(src), "--output", "out", "--model", str(model_path), "--hop_seconds", "0.96",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == ["yamnet-beam: --hop_seconds is deprecated; use --hop_s"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["hop_samples"] == 15360 and manifest["options"]["hop_s"] == 0.96
    res = cli("download-model", "--dest", "m", "--model_url", str(model_path), "--class_map_url", "", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [
        "yamnet-beam: download-model is deprecated; use download",
        "yamnet-beam: --dest is deprecated; use --out",
    ]
    assert (tmp_path / "m" / "yamnet.tflite").read_bytes() == model_path.read_bytes()


def test_demo_offline_with_model_runs_without_downloading(tmp_path, model_path):
    """No model in any default place and no network: --model is what the demo uses."""
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "YAMNET_BEAM_MODEL": ""}
    env |= {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}  # refused, were it tried
    work = tmp_path / "w"
    work.mkdir()
    res = cli("demo", "--model", str(model_path), cwd=work, env=env)
    assert res.returncode == 0, res.stderr
    assert "downloading" not in res.stdout and res.stderr == ""
    assert "5 files matched, 5 ok, 0 error" in res.stdout
    assert not (home / ".cache").exists()


def test_commands_that_need_the_model_say_what_to_do_offline(tmp_path, fixtures_dir, http_server):
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "YAMNET_BEAM_MODEL": ""}
    work = tmp_path / "w"
    work.mkdir()
    res = cli("run", "--input", str(fixtures_dir / "tone_1khz_16k.wav"), "--output", "o", cwd=work, env=env)
    line = one_error(res)
    assert line == f"no YAMNet model found (not in ./models/ nor the user cache); {NOT_FOUND_HINT}"
    assert NOT_FOUND_HINT == f"run `yamnet-beam download` to fetch it, or {OFFLINE_HINT}"
    (tmp_path / "empty").mkdir()
    server = http_server(tmp_path / "empty")  # a server that has no model: what an unreachable mirror looks like
    res = cli("download", "-o", "m", "--model_url", server.url("yamnet.tflite"), cwd=work, env=env)
    line = one_error(res)
    assert line.startswith("could not fetch") and line.endswith(f"without network access, {OFFLINE_HINT}"), line


def test_one_line_errors_stay_short(tmp_path):
    (tmp_path / "empty").mkdir()
    line = one_error(cli("run", "--input", "empty", "--output", "o", cwd=tmp_path))
    assert line.startswith("--input 'empty' matched no audio files (directories are searched recursively for .wav")
    assert len(line) < 200, line


@pytest.fixture
def many_files(tmp_path) -> Path:
    d = tmp_path / "audio"
    d.mkdir()
    rng = np.random.default_rng(7)
    t = np.arange(16000 * 10) / 16000
    for i in range(60):
        x = 0.1 * np.sin(2 * np.pi * (200 + 9 * i) * t) + 0.01 * rng.standard_normal(len(t))
        sf.write(d / f"f{i:02d}.wav", x.astype(np.float32), 16000)
    return d


def _rows(out: Path) -> tuple[list, list]:
    frames = pq.read_table(out / "frames", columns=["path", "frame", "scores", "embedding"]).sort_by(
        [("path", "ascending"), ("frame", "ascending")]
    )
    files = pq.read_table(out / "files", columns=["path", "status", "frames", "duration_s"]).sort_by("path")
    return frames.to_pylist(), files.to_pylist()


def test_ctrl_c_says_what_is_committed_and_resume_finishes_with_identical_rows(tmp_path, many_files, model_path):
    base = ["--input", str(many_files), "--model", str(model_path), "--part_files", "2"]
    files_dir = tmp_path / "out" / "files"
    code, err = interrupt_cli(["run", *base, "--output", "out"], files_dir, cwd=tmp_path)
    assert code == 130, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    committed = sum(pq.read_table(p).num_rows for p in files_dir.glob("*.parquet"))
    head, _, command = lines[0].partition("; finish with: ")
    assert head == (
        f"yamnet-beam: interrupted; {committed} files committed in {tmp_path / 'out'} ({committed} of 60 by this run)"
    )
    assert 0 < committed < 60
    resume = shlex.split(command)
    assert resume == ["yamnet-beam", "run", *base, "--output", "out", "--mode", "resume"]
    res = cli(*resume[1:], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"60 files matched, 60 ok, 0 error, {committed} already done" in res.stdout
    assert cli("run", *base, "--output", "clean", cwd=tmp_path).returncode == 0
    assert _rows(tmp_path / "out") == _rows(tmp_path / "clean")
    assert not list((tmp_path / "out").glob("_tmp/*"))


def test_overwrite_rule_is_the_same_for_every_command_that_writes(tmp_path, fixtures_dir, model_path):
    src = str(fixtures_dir / "tone_1khz_16k.wav")
    assert cli("run", "--input", src, "--output", "out", "--model", str(model_path), cwd=tmp_path).returncode == 0
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken.png").write_bytes(b"mine")
    for args, flag in (
        (["plot", "out", "--path", "*tone*", "--no_audio", "-o", "taken.png"], "-o taken.png"),
        (["report", "out", "--no_audio", "-o", "taken.png"], "-o taken.png"),
        (["query", "out", "summary", "--format", "csv", "-o", "taken.png"], "-o taken.png"),
        (["pool", "out", "-o", "taken"], "-o taken"),
        (["train", "out", "--labels", "l.csv", "-o", "taken"], "-o taken"),
        (["export", "--head", "h", "-o", "taken.png"], "-o taken.png"),
    ):
        line = one_error(cli(*args, cwd=tmp_path))
        assert line == f"{flag} already exists; choose another path, or pass --mode overwrite to replace it", args
    assert (tmp_path / "taken.png").read_bytes() == b"mine"
    res = cli("plot", "out", "--path", "*tone*", "--no_audio", "-o", "taken.png", "--mode", "overwrite", cwd=tmp_path)
    assert res.returncode == 0 and (tmp_path / "taken.png").read_bytes()[:4] == b"\x89PNG", res.stderr
    line = one_error(cli("run", "--input", src, "--output", "out", "--model", str(model_path), cwd=tmp_path))
    assert "pass --mode resume to add what is missing, or --mode overwrite to replace them" in line
    shutil.rmtree(tmp_path / "out")
