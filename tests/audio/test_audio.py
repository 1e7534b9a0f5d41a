"""Tests for yamnet_beam.audio: streaming decode -> downmix -> 16 kHz.

Expected rates and channel counts come from ``fixtures/make_fixtures.sh`` (the commands that made
each file), durations from that script where it fixes them and otherwise from PyAV's container
metadata (a decoder independent of libsndfile), never from soundfile itself.
"""

from __future__ import annotations

import sys
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import fsspec
import numpy as np
import pytest
import soundfile as sf
import soxr

from tests.support.fixtures import BAD, GOOD, SAME_UTTERANCE, Expected
from yamnet_beam.audio import (
    AUDIO_EXTENSIONS,
    TARGET_SAMPLE_RATE,
    AudioDecodeError,
    AudioInfo,
    decode_file,
    downmix,
    open_audio,
)

LOSSY_TOL_S = 0.06  # codec priming/padding, about one AAC/MP3 frame plus slack


def _tol(e: Expected) -> float:
    return LOSSY_TOL_S if e.lossy else 1.5 / e.rate


def _pyav_duration(path: Path) -> float:
    """Duration from the container/stream header as FFmpeg reports it."""
    with av.open(str(path)) as c:
        st = c.streams.audio[0]
        if st.duration is not None:
            return float(st.duration * st.time_base)
        return float(Fraction(c.duration, av.time_base))


def _resample_whole(x: np.ndarray, rate: int) -> np.ndarray:
    if rate == TARGET_SAMPLE_RATE:
        return x
    return soxr.resample(x, rate, TARGET_SAMPLE_RATE, quality="HQ")


def _decode(uri: str | Path, block_seconds: float) -> np.ndarray:
    with open_audio(str(uri), block_seconds=block_seconds) as s:
        return np.concatenate(list(s.blocks()))


def _peak_hz(x: np.ndarray, rate: int = TARGET_SAMPLE_RATE) -> tuple[float, float]:
    """Frequency of the FFT peak and the bin width."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x)), rate / len(x)


# ---------------------------------------------------------------------------------------
# fixture inventory


def test_fixture_tables_cover_every_file(fixtures_dir: Path) -> None:
    names = {p.name for p in fixtures_dir.iterdir() if p.is_file()}
    assert {n for n in names if not n.startswith("bad_")} == set(GOOD)
    assert {n for n in names if n.startswith("bad_")} == set(BAD)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_fixture_extensions_are_known(name: str) -> None:
    assert Path(name).suffix in AUDIO_EXTENSIONS


# ---------------------------------------------------------------------------------------
# good files


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_fixture_decodes_with_expected_metadata(fixtures_dir: Path, name: str) -> None:
    exp = GOOD[name]
    path = fixtures_dir / name
    y, info, duration = decode_file(str(path))

    assert info.sample_rate == exp.rate
    assert info.channels == exp.channels
    assert info.decoder == exp.decoder
    assert y.dtype == np.float32 and y.ndim == 1
    assert np.isfinite(y).all()
    assert np.abs(y).max() <= 1.05  # resampling may ring slightly past full scale

    assert duration == pytest.approx(_pyav_duration(path), abs=_tol(exp))
    if exp.duration is not None:
        assert duration == pytest.approx(exp.duration, abs=_tol(exp))
    assert abs(len(y) - round(duration * TARGET_SAMPLE_RATE)) <= 2


def test_good_fixture_formats_are_named(fixtures_dir: Path) -> None:
    fmt = {n: decode_file(str(fixtures_dir / n))[1].format for n in GOOD}
    assert fmt["speech_22k_mono.wav"] == "WAV/PCM_16"
    assert fmt["speech_48k_stereo.flac"] == "FLAC/PCM_16"
    assert fmt["sweep_22k.flac"] == "FLAC/PCM_24"
    assert fmt["speech_8k_u8.wav"] == "WAV/PCM_U8"
    assert fmt["speech_16k_float32.wav"] == "WAV/FLOAT"
    assert fmt["speech_44k_stereo.mp3"] == "MP3/MPEG_LAYER_III"
    assert fmt["speech_48k.opus"] == "OGG/OPUS"
    assert fmt["noise_44k_stereo.ogg"] == "OGG/VORBIS"
    assert fmt["speech_44k.m4a"].endswith("/aac") and "mp4" in fmt["speech_44k.m4a"]


@pytest.mark.parametrize("group", SAME_UTTERANCE, ids=["speech", "speech2"])
def test_files_from_one_utterance_last_equally_long(fixtures_dir: Path, group: list[str]) -> None:
    durations = {n: decode_file(str(fixtures_dir / n))[2] for n in group}
    reference = durations[group[0]]
    for name, d in durations.items():
        assert d == pytest.approx(reference, abs=_tol(GOOD[name]) + _tol(GOOD[group[0]])), name


@pytest.mark.parametrize("name", sorted(GOOD))
def test_streaming_is_bit_identical_to_one_block(fixtures_dir: Path, name: str) -> None:
    path = fixtures_dir / name
    small = _decode(path, block_seconds=0.37)
    large = _decode(path, block_seconds=60)
    np.testing.assert_array_equal(small, large)


@pytest.mark.parametrize("name", sorted(n for n, e in GOOD.items() if e.decoder == "soundfile"))
def test_streaming_equals_whole_array_soxr(fixtures_dir: Path, name: str) -> None:
    """Chunked resampling (a fixed 4 s grid with context, see audio.RESAMPLE_CHUNK) is a whole-array
    soxr call up to float rounding: same length, differences of a few 1e-7 at most."""
    path = fixtures_dir / name
    whole, rate = sf.read(str(path), dtype="float32", always_2d=True)
    expected = _resample_whole(downmix(whole), rate)
    got = _decode(path, block_seconds=0.37)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_m4a_decodes_via_pyav_like_ffmpeg(fixtures_dir: Path) -> None:
    """The PyAV path matches FFmpeg's own whole-file decode, downmixed and resampled by soxr."""
    path = fixtures_dir / "speech_44k.m4a"
    with av.open(str(path)) as c:
        planes = [f.to_ndarray() for f in c.decode(audio=0)]
    whole = np.concatenate(planes, axis=1).T  # fltp frames are (channels, n)
    expected = soxr.resample(downmix(whole), 44100, TARGET_SAMPLE_RATE, quality="HQ")
    got = _decode(path, block_seconds=0.37)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def _write_with_pyav(path: Path, codec: str, fmt: str, samples: np.ndarray, rate: int) -> None:
    """Encode (n, 2) ``samples`` (already in ``fmt``'s dtype) with FFmpeg's encoder."""
    planar = av.AudioFormat(fmt).is_planar
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="stereo")
        stream.codec_context.format = fmt
        for i in range(0, len(samples), 1024):
            block = samples[i : i + 1024]
            data = block.T if planar else block.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout="stereo")
            frame.sample_rate, frame.pts = rate, i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


PCM_FORMATS = [  # (FFmpeg codec, FFmpeg sample format, numpy dtype, libsndfile subtype)
    ("pcm_u8", "u8", np.uint8, "PCM_U8"),
    ("pcm_s16le", "s16", np.int16, "PCM_16"),
    ("pcm_s32le", "s32", np.int32, "PCM_32"),
    ("pcm_f32le", "flt", np.float32, "FLOAT"),
    ("pcm_f64le", "dbl", np.float64, "DOUBLE"),
]


@pytest.mark.parametrize(("codec", "fmt", "dtype", "subtype"), PCM_FORMATS)
def test_pyav_sample_formats_match_libsndfile(tmp_path: Path, codec: str, fmt: str, dtype: type, subtype: str) -> None:
    """Matroska PCM (PyAV only) decodes bit-identically to the same samples in a WAV."""
    rate = 22050
    x = np.random.default_rng(3).uniform(-0.9, 0.9, (rate, 2))
    if fmt == "u8":
        raw = np.round(x * 127 + 128).astype(np.uint8)
        as_float = (raw.astype(np.float64) - 128) / 128
    elif fmt in ("s16", "s32"):
        bits = np.iinfo(dtype).bits - 1
        raw = np.round(x * 2**bits).astype(dtype)
        as_float = raw / 2**bits
    else:
        raw = x.astype(dtype)
        as_float = raw
    _write_with_pyav(tmp_path / "x.mka", codec, fmt, raw, rate)
    sf.write(tmp_path / "x.wav", as_float, rate, subtype=subtype)

    y_av, info, duration = decode_file(str(tmp_path / "x.mka"))
    y_sf, _, _ = decode_file(str(tmp_path / "x.wav"))
    assert info == AudioInfo(rate, 2, f"matroska,webm/{codec}", "pyav")
    assert duration == 1.0
    np.testing.assert_array_equal(y_av, y_sf)


def test_pyav_planar_stereo_is_downmixed(tmp_path: Path) -> None:
    """AAC decodes to planar float: left carries a tone, right silence, so the mix halves it."""
    rate = 44100
    t = np.arange(2 * rate) / rate
    x = np.zeros((len(t), 2), np.float32)
    x[:, 0] = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    path = tmp_path / "left.m4a"
    _write_with_pyav(path, "aac", "fltp", x, rate)

    y, info, _ = decode_file(str(path))
    assert (info.channels, info.decoder) == (2, "pyav")
    peak, bin_hz = _peak_hz(y)
    assert abs(peak - 1000.0) <= bin_hz
    middle = y[4000:-4000].astype(np.float64)
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.25 / np.sqrt(2), rel=0.05)


def test_fsspec_urls_decode_like_local_paths(fixtures_dir: Path) -> None:
    path = fixtures_dir / "speech_48k_stereo.flac"
    local = _decode(path, block_seconds=1.0)
    fs = fsspec.filesystem("memory")
    fs.pipe("/audio-test/speech.flac", path.read_bytes())
    try:
        np.testing.assert_array_equal(_decode("memory://audio-test/speech.flac", 1.0), local)
    finally:
        fs.rm("/audio-test", recursive=True)
    np.testing.assert_array_equal(_decode(path.as_uri(), 1.0), local)


def test_stream_counters(fixtures_dir: Path) -> None:
    with open_audio(str(fixtures_dir / "sweep_22k.flac"), block_seconds=1.0) as s:
        assert s.source_samples == 0 and s.output_samples == 0
        blocks = list(s.blocks())
        assert s.source_samples == 5 * 22050
        assert s.output_samples == sum(len(b) for b in blocks) == 5 * TARGET_SAMPLE_RATE
        assert s.duration_s == 5.0
        with pytest.raises(RuntimeError):
            list(s.blocks())


# ---------------------------------------------------------------------------------------
# resampling keeps pitch and level


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 96000])
@pytest.mark.parametrize("channels", [1, 2])
def test_tone_keeps_frequency_and_level(tmp_path: Path, rate: int, channels: int) -> None:
    t = np.arange(2 * rate) / rate
    tone = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, np.repeat(tone[:, None], channels, axis=1), rate, subtype="FLOAT")

    y, info, _ = decode_file(str(path))
    assert (info.sample_rate, info.channels) == (rate, channels)
    assert len(y) == 2 * TARGET_SAMPLE_RATE
    peak, bin_hz = _peak_hz(y)
    assert abs(peak - 1000.0) <= bin_hz
    middle = y[1000:-1000]  # away from the resampler's edge transients
    assert np.sqrt(np.mean(middle.astype(np.float64) ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize(
    ("name", "hz", "amplitude"),
    [("tone_1khz_16k.wav", 1000.0, 0.5), ("tone_48k_6ch.wav", 440.0, 0.4)],
)
def test_tone_fixtures(fixtures_dir: Path, name: str, hz: float, amplitude: float) -> None:
    y, _, _ = decode_file(str(fixtures_dir / name))
    peak, bin_hz = _peak_hz(y)
    assert abs(peak - hz) <= bin_hz
    # All six channels carry the same sine, so the downmix keeps its full amplitude.
    assert np.abs(y[1000:-1000]).max() == pytest.approx(amplitude, rel=0.01)


# ---------------------------------------------------------------------------------------
# downmix


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_downmix_is_the_channel_mean(channels: int) -> None:
    x = np.random.default_rng(channels).uniform(-1, 1, (10_001, channels)).astype(np.float32)
    y = downmix(x)
    assert y.dtype == np.float32 and y.shape == (10_001,)
    np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=1), rtol=0, atol=1e-6)
    assert not np.shares_memory(y, x)


def test_downmix_of_mono_is_identity() -> None:
    x = np.linspace(-1, 1, 7, dtype=np.float32)
    assert downmix(x) is x


def test_downmix_does_not_depend_on_block_boundaries() -> None:
    x = np.random.default_rng(0).standard_normal((1000, 6)).astype(np.float32)
    pieces = np.concatenate([downmix(x[:333]), downmix(x[333:])])
    np.testing.assert_array_equal(pieces, downmix(x))


# ---------------------------------------------------------------------------------------
# failures


def test_missing_file_is_io_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioDecodeError) as err:
        open_audio(str(missing))
    assert err.value.kind == "io_error" and "nope.wav" in str(err.value)


def test_directory_is_io_error(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError) as err:
        open_audio(str(tmp_path))
    assert err.value.kind == "io_error"


def test_zero_sample_file_is_no_audio(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros((0, 2), np.float32), 44100)
    with pytest.raises(AudioDecodeError) as err:
        decode_file(str(path))
    assert err.value.kind == "no_audio" and "zero.wav" in str(err.value)


def test_corruption_after_yielded_blocks(tmp_path: Path) -> None:
    t = np.arange(20 * 44100) / 44100
    good = tmp_path / "long.flac"
    sf.write(good, 0.3 * np.sin(2 * np.pi * 300 * t), 44100, subtype="PCM_16")
    data = good.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2] + b"\xff" * 5000 + data[len(data) // 2 + 5000 :])

    got = []
    with pytest.raises(AudioDecodeError) as err, open_audio(str(cut), block_seconds=1.0) as s:
        got.extend(s.blocks())
    assert len(got) >= 2  # it failed part-way (after two 4 s resampling chunks), not at open
    assert err.value.kind == "corrupt"
    assert "cut.flac" in str(err.value) and "decode failed after" in str(err.value)


def test_without_pyav_m4a_names_the_extra(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` raise ImportError
    with pytest.raises(AudioDecodeError) as err:
        open_audio(str(fixtures_dir / "speech_44k.m4a"))
    assert err.value.kind == "unsupported_format"
    assert 'pip install "yamnet-beam[av]"' in str(err.value)


def test_error_kind_is_validated() -> None:
    with pytest.raises(ValueError):
        AudioDecodeError("weird", "x")


def test_bad_arguments(fixtures_dir: Path) -> None:
    path = str(fixtures_dir / "tone_1khz_16k.wav")
    with pytest.raises(ValueError):
        open_audio(path, block_seconds=0)
    with pytest.raises(ValueError):
        open_audio(path, resample_quality="best")


# ---------------------------------------------------------------------------------------
# memory: long files stream in bounded blocks


def test_long_file_streams_in_bounded_blocks(tmp_path: Path) -> None:
    rate, minutes, block_seconds = 44100, 5, 10.0
    path = tmp_path / "long.wav"
    chunk = (0.2 * np.random.default_rng(2).standard_normal((rate * 60, 2))).astype(np.float32)
    with sf.SoundFile(path, "w", rate, 2, subtype="PCM_16") as f:
        for _ in range(minutes):
            f.write(chunk)
    file_bytes = path.stat().st_size

    tracemalloc.start()
    try:
        lengths = []
        with open_audio(str(path), block_seconds=block_seconds) as s:
            for block in s.blocks():
                lengths.append(len(block))
            info: AudioInfo = s.info
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert info.sample_rate == rate and info.channels == 2
    assert sum(lengths) == minutes * 60 * TARGET_SAMPLE_RATE
    assert len(lengths) >= minutes * 60 / block_seconds
    assert max(lengths) <= 1.25 * block_seconds * TARGET_SAMPLE_RATE
    # Whole-file decoding would need > file_bytes (float32 is twice PCM_16) at once.
    assert peak < file_bytes / 4, f"peak traced memory {peak / 1e6:.1f} MB"
