"""The README's "Train your own classes" commands and MediaPipe snippet, run as written in a fresh directory."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from yamnet_beam.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text()
    return text[text.index("### Train your own classes") : text.index("### YAMNet in your own Beam pipeline")]


def test_readme_train_your_own_classes_runs(tmp_path, monkeypatch, model_path, capsys):
    section = _section()
    bash = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YAMNET_BEAM_MODEL", str(model_path))
    monkeypatch.setenv("PYTHONPATH", str(README.parent))  # subprocesses import this checkout's package
    for line in bash.splitlines():
        cmd = shlex.split(line, comments=True)
        if cmd[0] == "python":
            subprocess.run([sys.executable, *cmd[1:]], check=True, cwd=tmp_path)
        else:
            assert cmd[0] == "yamnet-beam"
            assert main(cmd[1:]) == 0, line
    out = capsys.readouterr().out
    assert "clip accuracy" in out and "pulses_0.wav" in out
    res = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, cwd=tmp_path, check=True)
    lines = res.stdout.splitlines()
    assert lines[0].startswith("0 [('pulses',") and len(lines) == 4
