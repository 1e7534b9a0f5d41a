"""A real run over varied synthesised audio at a short hop (a few thousand frames in several parts), for the index
tests; and exact search straight from the Parquet to compare with."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from yamnet_beam.job.pipeline import run
from yamnet_beam.table.output import OutputDir

SR = 16000
HOP = "0.12"


def make_audio(d: Path, fixtures_dir: Path, seconds: float = 20.0) -> None:
    """Tones, chirps, noises, pulse trains and the speech fixture: sounds YAMNet tells apart."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    for i, f in enumerate((220, 440, 1000, 2500, 5000)):
        sf.write(d / f"tone_{i}.wav", (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), SR)
    for i, (f0, f1) in enumerate(((200, 4000), (3000, 300), (500, 7000))):
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
        sf.write(d / f"chirp_{i}.wav", (0.3 * np.sin(phase)).astype(np.float32), SR)
    for i, colour in enumerate((0.0, 1.0, 2.0)):
        spec = np.fft.rfft(rng.standard_normal(len(t)))
        spec /= np.maximum(np.arange(len(spec)), 1) ** (colour / 2)
        x = np.fft.irfft(spec, len(t))
        sf.write(d / f"noise_{i}.wav", (0.3 * x / np.abs(x).max()).astype(np.float32), SR)
    for i, rate in enumerate((2, 5, 11)):
        env = (np.sin(2 * np.pi * rate * t) > 0.6).astype(np.float32)
        sf.write(d / f"pulse_{i}.wav", (0.3 * env * np.sin(2 * np.pi * (300 + 200 * i) * t)).astype(np.float32), SR)
    shutil.copy(fixtures_dir / "speech_16k_float32.wav", d / "speech.wav")


@pytest.fixture(scope="session")
def index_source(tmp_path_factory, fixtures_dir, model_args) -> Path:
    """The run's output, never modified: tests copy it (``fresh_out``) before indexing or rewriting it."""
    root = tmp_path_factory.mktemp("index_src")
    make_audio(root / "audio", fixtures_dir)
    out = root / "out"
    run(["--input", str(root / "audio"), "--output", str(out), "--hop_s", HOP, "--part_files", "2", *model_args])
    return out


@pytest.fixture
def fresh_out(index_source, tmp_path) -> Path:
    dest = tmp_path / "out"
    shutil.copytree(index_source, dest)
    return dest


def exact_table(out: Path):
    """Every stored frame's path, frame and unit embedding, read straight from the Parquet (no yamnet_beam code)."""
    parts = [pq.read_table(p, columns=["path", "frame", "embedding"]) for p in OutputDir(str(out)).frame_files]
    rows = [
        (p, f) for t in parts for p, f in zip(t.column("path").to_pylist(), t.column("frame").to_pylist(), strict=True)
    ]
    m = np.concatenate([np.stack(t.column("embedding").to_numpy(zero_copy_only=False)) for t in parts])
    m = m.astype(np.float32)
    return rows, m / np.linalg.norm(m, axis=1, keepdims=True)
