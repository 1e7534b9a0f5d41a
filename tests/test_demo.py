"""The demo set is deterministic, decodable, and the real model hears what the docs promise.

Decoding, resampling and framing are done here with soundfile + soxr + numpy and a plain LiteRT
interpreter, independently of the package's own audio path, so a bug there cannot hide one here.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from ai_edge_litert.interpreter import Interpreter

from yamnet_beam.demo import fix_ogg_serial, make_demo_audio

# name -> (sample rate, channels, seconds, clip-level top label, its mean score, runner-up, its score):
# the table in demo.py's docstring.
EXPECTED = {
    "sine_250hz_16k.wav": (16000, 1, 8.0, "Sine wave", 0.93, "Singing bowl", 0.30),
    "white_noise_44k_stereo.flac": (44100, 2, 8.0, "White noise", 0.46, "Noise", 0.35),
    "siren_48k.ogg": (48000, 1, 12.0, "Siren", 0.91, "Alarm", 0.87),
    "chime_22k.wav": (22050, 1, 10.0, "Ding", 0.60, "Clang", 0.19),
    "silence_then_dial_tone_8k.wav": (8000, 1, 10.0, "Silence", 0.58, "Telephone", 0.41),
}
WINDOW, HOP = 15600, 7680


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = make_demo_audio(tmp_path_factory.mktemp("demo"))
    return {p.name: p for p in paths}


def test_makes_the_documented_files(demo_files: dict[str, Path]) -> None:
    assert sorted(demo_files) == sorted(EXPECTED)
    total = sum(sf.info(p).duration for p in demo_files.values())  # measured, not the table's own numbers
    assert 30 <= total <= 60


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_file_decodes_with_expected_format(demo_files: dict[str, Path], name: str) -> None:
    sr, channels, seconds = EXPECTED[name][:3]
    x, file_sr = sf.read(demo_files[name], dtype="float32", always_2d=True)
    assert file_sr == sr
    assert x.shape[1] == channels
    assert x.shape[0] / sr == pytest.approx(seconds, abs=0.01)
    assert np.all(np.isfinite(x)) and np.max(np.abs(x)) <= 1.0


def test_same_bytes_every_time(demo_files: dict[str, Path], tmp_path: Path) -> None:
    again = make_demo_audio(tmp_path)
    for path in again:
        assert path.read_bytes() == demo_files[path.name].read_bytes(), path.name


def test_ogg_serial_fix_keeps_valid_crcs(demo_files: dict[str, Path], tmp_path: Path) -> None:
    data = demo_files["siren_48k.ogg"].read_bytes()
    serial = int.from_bytes(data[14:18], "little")
    # Recomputing every page CRC for the serial already there must change nothing.
    assert fix_ogg_serial(data, serial) == data
    other = fix_ogg_serial(data, 12345)
    assert other != data
    (tmp_path / "other.ogg").write_bytes(other)  # libsndfile rejects pages with bad CRCs
    decoded, _ = sf.read(tmp_path / "other.ogg", dtype="float32")
    original, _ = sf.read(demo_files["siren_48k.ogg"], dtype="float32")
    np.testing.assert_array_equal(decoded, original)


@pytest.fixture(scope="module")
def classify(model_path: Path, class_map_path: Path):
    names = [row["display_name"] for row in csv.DictReader(class_map_path.open())]
    interp = Interpreter(model_path=str(model_path), num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    out = next(d["index"] for d in interp.get_output_details() if d["name"] == "Identity")

    def frame_scores(path: Path) -> tuple[list[str], np.ndarray]:
        """The class names and the ``[frames, classes]`` scores of ``path``."""
        x, sr = sf.read(path, dtype="float32", always_2d=True)
        mono = x.mean(axis=1)
        audio = soxr.resample(mono, sr, 16000).astype(np.float32) if sr != 16000 else mono
        starts = range(0, len(audio) - WINDOW + 1, HOP)
        frames = []
        for s in starts:
            interp.set_tensor(inp, audio[None, s : s + WINDOW])
            interp.invoke()
            frames.append(interp.get_tensor(out)[0].copy())
        return names, np.array(frames)

    return frame_scores


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_clip_top_label_is_the_documented_one(classify, demo_files: dict[str, Path], name: str) -> None:
    names, frames = classify(demo_files[name])
    scores = dict(zip(names, frames.mean(axis=0).tolist(), strict=True))
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    top = max(scores, key=scores.get)
    assert top == EXPECTED[name][3], ranked[:5]
    # The docstring's scores (two decimals), with slack for another CPU's int8 kernels (XNNPACK picks per ISA).
    top_score, runner_up, runner_up_score = EXPECTED[name][4:]
    assert ranked[1][0] == runner_up, ranked[:5]
    assert ranked[0][1] == pytest.approx(top_score, abs=0.02), ranked[:5]
    assert ranked[1][1] == pytest.approx(runner_up_score, abs=0.02), ranked[:5]


def test_dial_tone_file_goes_from_silence_to_telephone_per_frame(classify, demo_files: dict[str, Path]) -> None:
    """The docstring's per-frame promise: the frame timestamps show where the tone starts."""
    names, frames = classify(demo_files["silence_then_dial_tone_8k.wav"])
    tops = [names[i] for i in frames.argmax(axis=1)]
    assert tops[0] == "Silence" and tops[-1] in ("Telephone", "Dial tone"), tops
    first_tone = next(i for i, t in enumerate(tops) if t != "Silence")
    assert all(t in ("Telephone", "Dial tone") for t in tops[first_tone:]), tops
    assert abs(first_tone * HOP / 16000 + WINDOW / 16000 - 6.0) < 1.0  # about where the 6 s of silence end
