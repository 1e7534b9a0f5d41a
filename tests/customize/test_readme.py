"""The README's "Train your own classes" commands and MediaPipe snippet, run as written in a fresh directory."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from yamnet_beam.cli import main
from yamnet_beam.customize.train import train

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
    train("labelled_out", "labelled/labels.csv", "sounds_mlp", head_type="mlp", hidden=256)
    _check_measured_table(section, {"linear": tmp_path / "sounds_head", "mlp (256 ReLU)": tmp_path / "sounds_mlp"})


def _check_measured_table(section: str, heads: dict[str, Path]) -> None:
    """The README's table of what train measured on the demo set is what train measures (2-decimal cells to 0.01:
    the last bits of the embeddings may differ between CPUs)."""
    block = re.search(r"^\| head \|.*?\n(?!\|)", section, re.S | re.M).group(0)
    rows = [
        [c.strip() for c in r.strip().strip("|").split("|")] for r in block.splitlines() if not r.startswith("|---")
    ]
    header, table = rows[0], {r[0]: r for r in rows[1:]}
    assert sorted(table) == sorted(heads)
    for name, head_dir in heads.items():
        m = json.loads((head_dir / "metrics.json").read_text())
        row = table[name]
        assert row[1:3] == [f"{m['clip']['accuracy']:.3f}", f"{m['clip']['macro_f1']:.3f}"], name
        for col, cell in zip(header[3:], row[3:], strict=True):
            cal = m["calibration"][col.split()[0]]
            p, r, t = (float(v) for v in re.fullmatch(r"([\d.]+)/([\d.]+) @ ([\d.]+)", cell).groups())
            assert (p, r, t) == pytest.approx((cal["precision"], cal["recall"], cal["threshold"]), abs=0.0101), (
                name,
                col,
            )
