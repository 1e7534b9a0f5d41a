"""The yamnet-beam command: run prints a summary, user errors exit 2 with one readable line."""

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from yamnet_beam.cli import main


@pytest.fixture
def small_dir(tmp_path, fixtures_dir):
    d = tmp_path / "in"
    d.mkdir()
    for name in ["tone_1khz_16k.wav", "speech_48k_stereo.flac", "bad_text.wav"]:
        shutil.copy(fixtures_dir / name, d / name)
    return d


def test_run_prints_summary_and_output_is_queryable(small_dir, tmp_path, model_path, class_map_path, capsys):
    out = tmp_path / "out"
    argv = ["run", "--input", str(small_dir), "--output", str(out), "--model", str(model_path)]
    assert main([*argv, "--class_map", str(class_map_path)]) == 0
    printed = capsys.readouterr().out
    assert "3 files matched, 2 ok, 1 error (unsupported_format: 1)" in printed
    assert "realtime" in printed and "h audio" in printed
    # the README's DuckDB example, verbatim in spirit: top labels per file straight from Parquet
    rows = duckdb.sql(
        f"SELECT path, top_label, count(*) AS n FROM '{out}/frames/*.parquet' GROUP BY ALL ORDER BY path, n DESC"
    ).fetchall()
    top = {}
    for path, label, _ in rows:
        top.setdefault(path.rsplit("/", 1)[1], label)
    assert top["speech_48k_stereo.flac"] == "Speech"
    assert top["tone_1khz_16k.wav"] in {"Sine wave", "Beep, bleep"}


def test_run_help_lists_options(capsys):
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--input", "--output", "--model", "--class_map", "--hop_s", "--embedding_dtype"):
        assert flag in text


def test_console_script_is_installed():
    # This environment's script (beside its interpreter), not whichever yamnet-beam is first on PATH.
    exe = Path(sys.executable).parent / "yamnet-beam"
    assert exe.is_file(), f"the package is not installed in {sys.prefix}: pip install -e '.[dev]'"
    shebang = exe.read_text().splitlines()[0].removeprefix("#!").strip()
    assert Path(shebang).resolve() == Path(sys.executable).resolve(), shebang
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "yamnet-beam download" in res.stdout and "run" in res.stdout
    res = subprocess.run([sys.executable, "-m", "yamnet_beam.cli", "run", "--help"], capture_output=True, text=True)
    assert "--input" in res.stdout


def test_demo_makes_audio_runs_and_shows_labels(tmp_path, model_path, monkeypatch, capsys):
    """The README's first command, minus the install and the one-time download (the model is given)."""
    monkeypatch.setenv("YAMNET_BEAM_MODEL", str(model_path))  # its class map is found beside it
    out = tmp_path / "demo_out"
    assert main(["demo", "--audio_dir", str(tmp_path / "demo_audio"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "5 files matched, 5 ok, 0 error" in printed
    for name, label in [("sine_250hz_16k.wav", "Sine wave"), ("siren_48k.ogg", "Siren"), ("chime_22k.wav", "Ding")]:
        assert any(line.split()[:1] == [name] and label in line for line in printed.splitlines()), (name, printed)
    assert (out / "manifest.json").is_file()


def test_pipelines_entry_point_runs_the_job(tmp_path, fixtures_dir, model_args):
    """pipelines/yamnet_to_parquet.py is what `--setup_file` launches use: it runs the same job."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "pipelines" / "yamnet_to_parquet.py"
    out = tmp_path / "out"
    res = subprocess.run(
        [
            sys.executable,
            str(script),
            "--input",
            str(fixtures_dir / "tone_1khz_16k.wav"),
            "--output",
            str(out),
            *model_args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "1 files matched, 1 ok, 0 error" in res.stdout
    assert (out / "frames").is_dir() and (out / "manifest.json").is_file()


def test_core_install_needs_no_extras(tmp_path, model_path):
    """`pip install .` (no extras) must run the job and the demo: DuckDB, matplotlib and PyAV stay optional."""
    code = (
        "import sys\n"
        "for mod in ('duckdb', 'matplotlib', 'av'):\n"
        "    sys.modules[mod] = None  # importing it now raises ImportError, as without the extra\n"
        "from yamnet_beam.cli import main\n"
        f"sys.exit(main(['demo', '--audio_dir', {str(tmp_path / 'a')!r}, '--output', {str(tmp_path / 'o')!r}]))\n"
    )
    env = {**__import__("os").environ, "YAMNET_BEAM_MODEL": str(model_path)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "5 files matched, 5 ok, 0 error" in res.stdout


def test_readme_options_table_lists_every_option():
    import argparse
    from pathlib import Path

    from yamnet_beam.job.options import YamnetOptions

    parser = argparse.ArgumentParser()
    YamnetOptions._add_argparse_args(parser)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("## Options") : readme.index("## Output")]
    flags = [a.option_strings[0] for a in parser._actions if a.option_strings and a.option_strings[0] != "-h"]
    assert [f for f in flags if f"`{f}`" not in table] == []


@pytest.mark.parametrize(
    "args, expect_rc",
    [(["run", "--help"], 0), (["query", "/no/such/output", "summary"], 2), (["run", "--input", "/no/such.wav"], 2)],
)
def test_commands_print_no_third_party_import_noise(args, expect_rc):
    """Beam's import-time probe ("apitools not found ...") stays out of a fresh process's output."""
    repo = Path(__file__).resolve().parents[1]  # this checkout's package, whichever one is installed
    res = subprocess.run([sys.executable, "-m", "yamnet_beam.cli", *args], capture_output=True, text=True, cwd=repo)
    assert res.returncode == expect_rc, res.stderr
    assert "apitools" not in res.stderr + res.stdout
    assert "WARNING" not in res.stderr
    if expect_rc == 2:  # a user error is exactly one line that says what to do
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("yamnet-beam: error: "), res.stderr


def test_import_noise_is_demoted_to_debug_not_dropped():
    """Inside the import guard root warnings become DEBUG (kept when DEBUG is on); errors and later warnings pass."""
    import logging

    from yamnet_beam.cli import _import_noise_at_debug

    seen: list[tuple[int, str]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.levelno, record.getMessage()))

    root = logging.getLogger()
    handler, level = Keep(), root.level
    root.addHandler(handler)
    try:
        root.setLevel(logging.WARNING)
        with _import_noise_at_debug():
            logging.warning("probe noise")
            logging.error("a real error")
        logging.warning("a real warning")
        root.setLevel(logging.DEBUG)
        with _import_noise_at_debug():
            logging.warning("noise, wanted at debug")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert seen == [
        (logging.ERROR, "a real error"),
        (logging.WARNING, "a real warning"),
        (logging.DEBUG, "noise, wanted at debug"),
    ]
