"""One real run over a scene with sounds at known times, shared by the analysis tests (session fixtures)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from yamnet_beam.analysis.output import open_output
from yamnet_beam.job.pipeline import run

SR = 16000
LEAD_S, GAP_S, TONE_S, TAIL_S = 3.0, 4.0, 5.0, 3.0


def _active_span(x: np.ndarray, level: float = 0.02) -> tuple[float, float]:
    """First and last sample above ``level``, in seconds: where the speech really is in its recording."""
    loud = np.flatnonzero(np.abs(x) > level)
    return loud[0] / SR, (loud[-1] + 1) / SR


@pytest.fixture(scope="session")
def scene(tmp_path_factory, fixtures_dir, model_path, class_map_path):
    """silence | speech | silence | 1 kHz tone | silence, plus two other inputs and a broken file, run once."""
    audio = tmp_path_factory.mktemp("scene_audio")
    speech, sr = sf.read(fixtures_dir / "speech_16k_float32.wav", dtype="float32")
    assert sr == SR
    t = np.arange(int(TONE_S * SR)) / SR
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)

    def silence(s):
        return np.zeros(int(s * SR), np.float32)

    mix = np.concatenate([silence(LEAD_S), speech, silence(GAP_S), tone, silence(TAIL_S)])
    sf.write(audio / "scene.wav", mix, SR, subtype="FLOAT")
    shutil.copy(fixtures_dir / "noise_44k_stereo.ogg", audio / "noise.ogg")
    shutil.copy(fixtures_dir / "sweep_22k.flac", audio / "sweep.flac")
    (audio / "broken.wav").write_bytes(b"not audio at all")
    out = tmp_path_factory.mktemp("scene_out") / "out"
    run(["--input", str(audio), "--output", str(out), "--model", str(model_path), "--class_map", str(class_map_path)])
    s0, s1 = _active_span(speech)
    tone_start = LEAD_S + len(speech) / SR + GAP_S
    return {
        "out": str(out),
        "audio": audio,
        "scene": str(audio / "scene.wav"),
        "mix": mix,
        "speech": (LEAD_S + s0, LEAD_S + s1),
        "tone": (tone_start, tone_start + TONE_S),
    }


@pytest.fixture(scope="session")
def out(scene):
    return open_output(scene["out"])
