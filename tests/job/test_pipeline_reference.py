"""The job's frames against an independent reference: soundfile/PyAV + soxr decoding, the framing formula,
and a plain LiteRT interpreter invoked per window (tests/support/reference.py)."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.support import reference
from yamnet_beam.job.pipeline import run

NAMES = ["tone_1khz_16k.wav", "speech_22k_mono.wav", "speech_48k_stereo.flac", "speech_44k.m4a", "short_0.3s_16k.wav"]


@pytest.fixture(scope="module")
def ref_run(tmp_path_factory, fixtures_dir, model_args):
    d = tmp_path_factory.mktemp("ref_audio")
    for n in NAMES:
        shutil.copy(fixtures_dir / n, d / n)
    out = tmp_path_factory.mktemp("ref_out") / "out"
    run(["--input", str(d), "--output", str(out), *model_args, "--frames_per_batch", "5"])
    t = pq.read_table(out / "frames", columns=["path", "frame", "start_s", "end_s", "valid_samples", "scores"])
    return d, t.sort_by([("path", "ascending"), ("frame", "ascending")])


@pytest.mark.parametrize("name", NAMES)
def test_frames_equal_a_plain_interpreter_on_independently_decoded_audio(ref_run, model_path, name):
    d, t = ref_run
    rows = t.filter(pc.equal(t.column("path"), str(d / name)))
    x = reference.decode_16k(d / name)
    n = reference.num_frames(len(x))
    assert rows.column("frame").to_pylist() == list(range(n))
    start = np.arange(n) * reference.HOP / reference.SAMPLE_RATE
    np.testing.assert_allclose(rows.column("start_s").to_numpy(), start, rtol=0, atol=1e-9)
    np.testing.assert_allclose(rows.column("end_s").to_numpy(), start + reference.WINDOW / 16000, rtol=0, atol=1e-9)
    valid = np.clip(len(x) - np.arange(n) * reference.HOP, 0, reference.WINDOW)
    assert rows.column("valid_samples").to_numpy().tolist() == valid.tolist()
    got = np.stack(rows.column("scores").to_numpy(zero_copy_only=False))
    expected = reference.interpreter_scores(model_path, reference.frames(x))
    if name.endswith("16k.wav"):  # no resampling, no downmix: the same samples, so the same bits
        np.testing.assert_array_equal(got, expected)
    else:
        # A streamed resampler differs from one whole-array call by float rounding (a few 1e-7), which
        # XNNPACK's per-row activation quantization can turn into a few 1e-2 on a score (measured <= 0.02).
        diff = np.abs(got - expected)
        assert diff.max() <= 0.05 and diff.mean() <= 5e-4, (diff.max(), diff.mean())
        assert (got.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 0.9
