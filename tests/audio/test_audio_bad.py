"""Bad and extreme inputs through yamnet_beam.audio: each gets its exact error kind, or decodes right.

Signals are synthesised here with known content (tones, noise, NaN at known positions), so every
expectation comes from how the file was made, not from the decoder under test. Hanging and failing
reads are simulated with fsspec filesystems registered by the tests.
"""

from __future__ import annotations

import gc
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest
import soundfile as sf
import soxr
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from tests.support.fixtures import BAD
from tests.support.helpers import decode_threads
from yamnet_beam.audio import (
    ERROR_KINDS,
    TARGET_SAMPLE_RATE,
    AudioDecodeError,
    decode_file,
    open_audio,
)
from yamnet_beam.audio import errors as audio_errors
from yamnet_beam.audio import source as audio_source
from yamnet_beam.job.listing import match_inputs
from yamnet_beam.uris import display_path

SR = TARGET_SAMPLE_RATE


def _decode(uri: str | Path, **kwargs) -> np.ndarray:
    with open_audio(str(uri), **kwargs) as s:
        blocks = list(s.blocks())
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def _error(uri: str | Path, **kwargs) -> AudioDecodeError:
    with pytest.raises(AudioDecodeError) as err:
        _decode(uri, **kwargs)
    assert err.value.kind in ERROR_KINDS
    str(err.value).encode("utf-8")  # printable, storable in Parquet
    return err.value


def _tone(hz: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * np.arange(round(seconds * rate)) / rate)


def _peak_hz(x: np.ndarray, rate: int = SR) -> tuple[float, float]:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x)), rate / len(x)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


# ---------------------------------------------------------------------------------------
# the bad_* fixtures (tests/test_audio.py lists them): exact kinds, with and without the per-file limits


@pytest.mark.parametrize("limits", [{}, {"timeout_s": 30.0, "max_duration_s": 3600.0}], ids=["plain", "limits"])
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_fixture_kind(fixtures_dir: Path, name: str, limits: dict, no_leaked_threads: None) -> None:
    kind, reason = BAD[name]
    err = _error(fixtures_dir / name, **limits)
    assert err.kind == kind
    assert name in str(err) and reason in str(err)


# ---------------------------------------------------------------------------------------
# zero-length, short, NaN/Inf, huge values


@pytest.mark.parametrize(("fmt", "channels"), [("WAV", 1), ("WAV", 2), ("AIFF", 1)])
def test_zero_length_audio_is_no_audio(tmp_path: Path, fmt: str, channels: int) -> None:
    path = tmp_path / f"zero.{fmt.lower()}"
    sf.write(path, np.zeros((0, channels), np.float32), 44100, format=fmt)
    assert path.stat().st_size > 0  # a header, no samples
    err = _error(path)
    assert err.kind == "no_audio" and "no audio samples" in str(err)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_shorter_than_a_window_decodes(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "short.wav"
    sf.write(path, _tone(440, rate, 0.1), rate, subtype="FLOAT")
    y, info, duration = decode_file(str(path))
    assert duration == pytest.approx(0.1, abs=1 / rate)
    assert abs(len(y) - 1600) <= 1  # far below one 15600-sample window: the pipeline pads it


# (frame, channel) cells set to a non-finite value, spread over several decode blocks below.
NONFINITE = [
    (10, 0, np.nan),
    (500, 1, np.inf),
    (500, 0, -np.inf),
    (900, 0, np.nan),
    (900, 1, np.nan),
    (2500, 1, np.nan),
]


@pytest.mark.parametrize("rate", [16000, 44100])
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_nonfinite_samples_are_zeroed_and_counted(tmp_path: Path, rate: int, subtype: str) -> None:
    clean = np.random.default_rng(1).uniform(-0.5, 0.5, (rate, 2))
    for frame, channel, _ in NONFINITE:
        clean[frame, channel] = 0.0
    dirty = clean.copy()
    for frame, channel, value in NONFINITE:
        dirty[frame, channel] = value
    sf.write(tmp_path / "clean.wav", clean, rate, subtype=subtype)
    sf.write(tmp_path / "dirty.wav", dirty, rate, subtype=subtype)

    block_seconds = 700 / rate
    with open_audio(str(tmp_path / "dirty.wav"), block_seconds=block_seconds) as s:
        y = np.concatenate(list(s.blocks()))
        assert s.nonfinite_samples == len(NONFINITE)  # one per value, per channel
        assert s.clipped_samples == 0
    assert np.isfinite(y).all()
    np.testing.assert_array_equal(y, _decode(tmp_path / "clean.wav", block_seconds=block_seconds))
    if rate == SR:  # no resampling: the mean of the channels with each non-finite value zeroed
        np.testing.assert_allclose(y, clean.mean(axis=1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("huge", [3e38, 1.5e19, 5e6])
def test_huge_finite_samples_are_clipped_not_turned_into_inf(tmp_path: Path, huge: float) -> None:
    """3e38 is finite, but two of them overflow a downmix and the resampler to Inf; lone huge values
    that do not overflow a sum of squares must be caught too."""
    rate = 44100
    x = np.random.default_rng(2).uniform(-0.5, 0.5, (rate, 2)).astype(np.float32)
    cells = [(1000, 0), (1000, 1), (1001, 0), (30000, 1)]
    bounded = x.copy()
    for frame, channel in cells:
        x[frame, channel] = huge if channel else -huge
        bounded[frame, channel] = 2.0**20 if channel else -(2.0**20)
    sf.write(tmp_path / "huge.wav", x, rate, subtype="FLOAT")
    sf.write(tmp_path / "bounded.wav", bounded, rate, subtype="FLOAT")
    with open_audio(str(tmp_path / "huge.wav")) as s:
        y = np.concatenate(list(s.blocks()))
        assert (s.clipped_samples, s.nonfinite_samples) == (len(cells), 0)
    assert np.isfinite(y).all()
    np.testing.assert_array_equal(y, _decode(tmp_path / "bounded.wav"))


# ---------------------------------------------------------------------------------------
# extreme sample rates and channel counts


@pytest.mark.parametrize(("rate", "hz"), [(1000, 200.0), (2000, 440.0), (192000, 1000.0), (384000, 5000.0)])
def test_extreme_sample_rates(tmp_path: Path, rate: int, hz: float) -> None:
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, _tone(hz, rate, 2.0), rate, subtype="FLOAT")
    y, info, duration = decode_file(str(path))
    assert info.sample_rate == rate and duration == 2.0
    assert abs(len(y) - 2 * SR) <= 2
    peak, bin_hz = _peak_hz(y)
    assert abs(peak - hz) <= bin_hz
    assert _rms(y[2000:-2000]) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_content_above_8khz_is_filtered_not_aliased(tmp_path: Path) -> None:
    rate = 384000
    path = tmp_path / "ultra.wav"
    sf.write(path, _tone(1000.0, rate, 1.0, 0.3) + _tone(20000.0, rate, 1.0, 0.3), rate, subtype="FLOAT")
    y = _decode(path)
    # Aliased, 20 kHz would land at 4 kHz; filtered, only the 1 kHz tone is left.
    spectrum = np.abs(np.fft.rfft(y[2000:-2000] * np.hanning(len(y) - 4000)))
    freqs = np.fft.rfftfreq(len(y) - 4000, 1 / SR)
    near = lambda f: spectrum[np.abs(freqs - f) < 20].max()  # noqa: E731
    assert near(4000.0) < 1e-3 * near(1000.0)
    assert _rms(y[2000:-2000]) == pytest.approx(0.3 / np.sqrt(2), rel=0.02)


@pytest.mark.parametrize(("channels", "rate"), [(32, 16000), (64, 16000), (64, 48000)])
def test_many_channels_downmix_to_the_mean(tmp_path: Path, channels: int, rate: int) -> None:
    x = np.random.default_rng(channels).uniform(-0.9, 0.9, (rate, channels)).astype(np.float32)
    path = tmp_path / f"ch{channels}.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    y, info, _ = decode_file(str(path))
    assert info.channels == channels
    mean = x.astype(np.float64).mean(axis=1)
    expected = mean if rate == SR else soxr.resample(mean, rate, SR, quality="HQ")
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------
# file system failures


def test_file_deleted_after_matching_is_io_error(tmp_path: Path) -> None:
    sf.write(tmp_path / "gone.wav", _tone(440, SR, 0.5), SR)
    [item] = match_inputs([str(tmp_path)])
    os.unlink(item.path)
    err = _error(item.path)
    assert err.kind == "io_error"
    assert "gone.wav" in str(err) and "no such file" in str(err)


@pytest.mark.parametrize("uri_kind", ["path", "file_url"])
def test_permission_denied_at_open_is_io_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uri_kind: str) -> None:
    path = tmp_path / "locked.wav"
    sf.write(path, _tone(440, SR, 0.5), SR)

    def deny(self, p, mode="rb", **kwargs):
        raise PermissionError(13, "Permission denied", p)

    monkeypatch.setattr(LocalFileSystem, "_open", deny)
    err = _error(str(path) if uri_kind == "path" else path.as_uri())
    assert err.kind == "io_error"
    assert "locked.wav" in str(err) and "permission denied" in str(err)


SETPRIV = shutil.which("setpriv")


@pytest.mark.skipif(SETPRIV is None or os.geteuid() != 0, reason="needs root and setpriv to drop capabilities")
def test_permission_denied_for_real() -> None:
    """Root with CAP_DAC_OVERRIDE reads a chmod-000 file, so decode it in a subprocess without
    capabilities, where the kernel denies it. (User nobody cannot even start this interpreter when
    it lives under /root.)"""
    top = Path(tempfile.mkdtemp(prefix="yamnet-beam-perm-"))
    try:
        top.chmod(0o755)
        path = top / "secret.wav"
        sf.write(path, _tone(440, SR, 0.5), SR)
        path.chmod(0o000)
        code = (
            "import json, sys\n"
            "from yamnet_beam.audio import AudioDecodeError, decode_file\n"
            "try:\n"
            "    decode_file(sys.argv[1])\n"
            "    print(json.dumps(['ok', '']))\n"
            "except AudioDecodeError as e:\n"
            "    print(json.dumps([e.kind, str(e)]))\n"
        )
        cmd = [SETPRIV, "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-c", code, str(path)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")
        assert out.returncode == 0, out.stderr[-2000:]
        kind, message = json.loads(out.stdout.strip().splitlines()[-1])
        assert kind == "io_error"
        assert "permission denied" in message and "secret.wav" in message
    finally:
        shutil.rmtree(top, ignore_errors=True)


class _Scripted(io.BytesIO):
    """In-memory file whose reads hang on ``gate``, fail, or crawl, once they would reach ``at``."""

    def __init__(self, data: bytes, behaviour: dict) -> None:
        super().__init__(data)
        self.b = behaviour

    def _before(self, n: int) -> None:
        b = self.b
        if self.tell() + n > b.get("at", 0):
            if "gate" in b:
                b["gate"].wait()
            if "error" in b:
                raise b["error"]
        if "seconds_per_byte" in b:
            time.sleep(b["seconds_per_byte"] * n)

    def read(self, n: int | None = -1) -> bytes:
        self._before(len(self.getbuffer()) if n is None or n < 0 else n)
        return super().read(n)

    def readinto(self, buf) -> int:
        self._before(len(buf))
        return super().readinto(buf)


class ScriptedFS(MemoryFileSystem):
    """``scripted://`` files: content from :meth:`pipe`, read behaviour from ``behaviours[path]``."""

    protocol = "scripted"
    store: dict = {}  # noqa: RUF012 - fsspec's own pattern: one store per class
    pseudo_dirs = [""]  # noqa: RUF012
    behaviours: dict = {}  # noqa: RUF012

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("scripted://"))

    def _open(self, path, mode="rb", **kwargs):
        if mode != "rb":
            return super()._open(path, mode, **kwargs)
        path = self._strip_protocol(path)
        return _Scripted(self.store[path].getvalue(), self.behaviours.get(path, {}))


@pytest.fixture
def scripted() -> Iterator[Callable[..., str]]:
    """Makes ``scripted://`` files; opens every gate at teardown so no thread stays blocked."""
    fsspec.register_implementation("scripted", ScriptedFS, clobber=True)
    fs = fsspec.filesystem("scripted")
    made: list[str] = []

    def make(name: str, data: bytes, **behaviour) -> str:
        path = f"/t/{name}"
        fs.pipe(path, data)
        ScriptedFS.behaviours[path] = behaviour
        made.append(path)
        return f"scripted:/{path}"

    yield make
    for path in made:
        behaviour = ScriptedFS.behaviours.pop(path)
        if "gate" in behaviour:
            behaviour["gate"].set()
        fs.rm(path)
    for t in decode_threads():
        t.join(10)
    assert decode_threads() == []  # released threads saw the stop flag and ended


def _wav_bytes(x: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize("where", ["open", "mid"])
def test_read_error_is_io_error_never_a_silent_eof(scripted, where: str) -> None:
    """libsndfile reads through cffi callbacks, which swallow exceptions: without a guard a
    connection dropped mid-file looked like a clean end, and half a file passed as complete."""
    data = _wav_bytes(_tone(440, SR, 5.0), SR)
    at = 0 if where == "open" else len(data) // 2
    uri = scripted("drop.wav", data, at=at, error=ConnectionResetError(104, "Connection reset by peer"))
    err = _error(uri, block_seconds=1.0)
    assert err.kind == "io_error"
    assert "drop.wav" in str(err) and "Connection reset by peer" in str(err)
    assert ("while opening" in str(err)) == (where == "open")


def test_permission_lost_mid_read_is_io_error(scripted) -> None:
    data = _wav_bytes(_tone(440, SR, 5.0), SR)
    uri = scripted("revoked.wav", data, at=len(data) // 2, error=PermissionError(13, "Permission denied"))
    err = _error(uri, block_seconds=1.0)
    assert err.kind == "io_error" and "permission denied" in str(err) and "read failed after" in str(err)


# ---------------------------------------------------------------------------------------
# file names


NAMES = [  # (name as Python sees it, as a table shows it)
    (os.fsdecode(b"caf\xe9 latin-1.wav"), "caf\\xe9 latin-1.wav"),  # not UTF-8: a surrogate escape
    (os.fsdecode(b"\xff\xfe.wav"), "\\xff\\xfe.wav"),
    ("space and ünïcödé 日本語 #1?.wav", "space and ünïcödé 日本語 #1?.wav"),
    ("a::b [x] 100%.wav", "a::b [x] 100%.wav"),  # "::" is URL chaining to fsspec.open()
]


@pytest.mark.parametrize(("name", "shown"), NAMES, ids=["latin1", "ff-fe", "unicode-space", "fsspec-chars"])
def test_odd_file_names_decode_and_display_as_utf8(tmp_path: Path, name: str, shown: str) -> None:
    x = _tone(440, SR, 0.5)
    with open(os.fsencode(tmp_path) + b"/" + os.fsencode(name), "wb") as f:
        f.write(_wav_bytes(x, SR, "FLOAT"))
    [item] = match_inputs([str(tmp_path)])
    np.testing.assert_allclose(_decode(item.path), x, atol=1e-7)

    assert display_path(item.path) == f"{tmp_path}/{shown}"
    display_path(item.path).encode("utf-8")  # raises on surrogates
    # An error message for such a file is printable too.
    (tmp_path / "bad").mkdir()
    with open(os.fsencode(tmp_path / "bad") + b"/" + os.fsencode(name), "wb") as f:
        f.write(b"not audio at all")
    err = _error(os.fsdecode(os.fsencode(tmp_path / "bad") + b"/" + os.fsencode(name)))
    assert err.kind == "unsupported_format" and f"bad/{shown}:" in str(err)


def test_display_path_escapes_only_undecodable_bytes() -> None:
    assert display_path(os.fsdecode(b"/d/caf\xe9.wav")) == "/d/caf\\xe9.wav"
    assert display_path("/d/ünï 日本.wav") == "/d/ünï 日本.wav"
    assert display_path("gs://bucket/a b.wav") == "gs://bucket/a b.wav"
    assert display_path("lone \ud800 surrogate").encode("utf-8")


# ---------------------------------------------------------------------------------------
# timeouts


def test_decoder_hanging_at_open_times_out(scripted) -> None:
    gate = threading.Event()
    uri = scripted("hang_open.wav", _wav_bytes(_tone(440, SR, 3.0), SR), at=0, gate=gate)
    t0 = time.monotonic()
    with pytest.raises(AudioDecodeError) as err:
        open_audio(uri, timeout_s=0.5)
    elapsed = time.monotonic() - t0
    assert err.value.kind == "timeout"
    assert "hang_open.wav" in str(err.value) and "longer than 0.5 s" in str(err.value)
    assert "stopped while opening" in str(err.value)
    assert 0.5 <= elapsed < 0.5 + 5.0
    assert not gate.is_set() and len(decode_threads()) == 1  # abandoned, still blocked


def test_decoder_hanging_mid_stream_times_out_after_the_blocks_before(scripted) -> None:
    gate = threading.Event()
    data = _wav_bytes(_tone(440, SR, 6.0), SR)
    uri = scripted("hang_mid.wav", data, at=len(data) // 2, gate=gate)
    got: list[np.ndarray] = []
    t0 = time.monotonic()
    with pytest.raises(AudioDecodeError) as err, open_audio(uri, block_seconds=1.0, timeout_s=0.5) as s:
        got.extend(s.blocks())
    assert err.value.kind == "timeout"
    assert time.monotonic() - t0 < 0.5 + 5.0
    assert 2 * SR <= sum(map(len, got)) <= 3 * SR  # the blocks read before the hang were delivered
    assert f"stopped after {sum(map(len, got)) / SR:.1f} s of audio" in str(err.value)


def test_timeout_counts_total_waiting_not_per_block(scripted) -> None:
    """Each block arrives well within the limit, but this file keeps the caller waiting longer in total.

    Margins wide enough for a loaded machine: a block takes ~0.12 s against a 1.5 s limit, the file 3.6 s.
    """
    data = _wav_bytes(_tone(440, SR, 30.0), SR)
    uri = scripted("slow.wav", data, seconds_per_byte=3.6 / len(data))  # ~0.12 s per 1 s block
    got: list[np.ndarray] = []
    with pytest.raises(AudioDecodeError) as err, open_audio(uri, block_seconds=1.0, timeout_s=1.5) as s:
        got.extend(s.blocks())
    assert err.value.kind == "timeout"
    assert len(got) >= 2  # no single wait reached the limit


def test_time_spent_by_a_slow_consumer_is_not_charged(scripted) -> None:
    data = _wav_bytes(_tone(440, SR, 8.0), SR)
    uri = scripted("steady.wav", data, seconds_per_byte=0.4 / len(data))  # ~0.05 s per block
    t0 = time.monotonic()
    with open_audio(uri, block_seconds=1.0, timeout_s=0.6) as s:
        n = 0
        for block in s.blocks():
            n += len(block)
            time.sleep(0.15)  # "inference": the decoder stays ahead, so waits stay short
    assert n == 8 * SR
    assert time.monotonic() - t0 > 0.6  # longer than the limit in wall time, yet no timeout


def test_bad_limits_are_value_errors(fixtures_dir: Path) -> None:
    path = str(fixtures_dir / "tone_1khz_16k.wav")
    for kwargs in ({"timeout_s": 0}, {"timeout_s": -1.0}, {"max_duration_s": 0}, {"max_duration_s": -5}):
        with pytest.raises(ValueError):
            open_audio(path, **kwargs)


# ---------------------------------------------------------------------------------------
# max_duration_s


@pytest.mark.parametrize("rate", [16000, 44100])
def test_too_long_yields_the_first_max_duration_then_raises(tmp_path: Path, rate: int) -> None:
    x = np.random.default_rng(rate).uniform(-0.5, 0.5, 5 * rate).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    got: list[np.ndarray] = []
    with pytest.raises(AudioDecodeError) as err, open_audio(str(path), block_seconds=0.7, max_duration_s=2.0) as s:
        got.extend(s.blocks())
    assert err.value.kind == "too_long"
    assert "--max_duration_s=2" in str(err.value) and "first 2.0 s were processed" in str(err.value)
    assert s.duration_s == 2.0
    y = np.concatenate(got)
    head = x[: 2 * rate]
    expected = head if rate == SR else soxr.resample(head, rate, SR, quality="HQ")
    assert len(y) == 2 * SR
    np.testing.assert_array_equal(y, expected)


def test_file_exactly_max_duration_long_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "two.wav"
    sf.write(path, _tone(440, 44100, 2.0), 44100)
    with open_audio(str(path), block_seconds=0.5, max_duration_s=2.0) as s:
        assert sum(map(len, s.blocks())) == 2 * SR


def test_too_long_through_pyav(fixtures_dir: Path) -> None:
    got: list[np.ndarray] = []
    with (
        pytest.raises(AudioDecodeError) as err,
        open_audio(str(fixtures_dir / "speech_44k.m4a"), max_duration_s=1.0) as s,
    ):
        got.extend(s.blocks())
    assert err.value.kind == "too_long" and s.info.decoder == "pyav"
    assert abs(sum(map(len, got)) - SR) <= 2


# ---------------------------------------------------------------------------------------
# decoders missing or failing


def test_unsupported_codec_without_pyav_names_the_extra(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio_errors, "import_av", lambda: None)
    err = _error(fixtures_dir / "speech_44k.m4a")
    assert err.kind == "unsupported_format"
    assert 'pip install "yamnet-beam[av]"' in str(err)
    # A file libsndfile recognises but finds damaged stays "corrupt" without PyAV too.
    assert _error(fixtures_dir / "bad_header_only.wav").kind == "corrupt"


def test_wav_with_a_codec_no_decoder_knows_is_unsupported(tmp_path: Path) -> None:
    data = bytearray(_wav_bytes(_tone(440, SR, 0.5), SR))
    assert data[20:22] == b"\x01\x00"  # wFormatTag = PCM
    data[20:22] = (0x7777).to_bytes(2, "little")
    path = tmp_path / "odd_codec.wav"
    path.write_bytes(bytes(data))
    err = _error(path)
    assert err.kind == "unsupported_format" and "odd_codec.wav" in str(err)


def test_non_utf8_metadata_does_not_fail_a_file(fixtures_dir: Path, tmp_path: Path) -> None:
    data = (fixtures_dir / "speech_44k.m4a").read_bytes()
    assert data.count(b"Lavf") == 1  # the encoder tag
    path = tmp_path / "tagged.m4a"
    path.write_bytes(data.replace(b"Lavf", b"\xff\xfeav"))
    np.testing.assert_array_equal(_decode(path), _decode(fixtures_dir / "speech_44k.m4a"))


def test_unexpected_exception_in_the_decoder_reaches_the_caller(
    fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch, no_leaked_threads: None
) -> None:
    def broken(x: np.ndarray) -> np.ndarray:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(audio_source, "downmix", broken)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        _decode(fixtures_dir / "speech_48k_stereo.flac")


# ---------------------------------------------------------------------------------------
# the background thread never outlives its stream


def test_threads_end_after_full_decode_error_and_early_close(fixtures_dir: Path, no_leaked_threads: None) -> None:
    _decode(fixtures_dir / "sweep_22k.flac", block_seconds=0.5)
    _error(fixtures_dir / "bad_truncated.flac")
    with open_audio(str(fixtures_dir / "silence_10s_16k.wav"), block_seconds=0.5) as s:
        next(iter(s.blocks()))  # the consumer stops after one of 20 blocks
    with open_audio(str(fixtures_dir / "silence_10s_16k.wav"), block_seconds=0.5) as s:
        pass  # never iterated
    for _ in range(20):
        with open_audio(str(fixtures_dir / "short_0.3s_16k.wav")) as s:
            list(s.blocks())


def test_dropped_streams_stop_their_threads(fixtures_dir: Path, no_leaked_threads: None) -> None:
    path = str(fixtures_dir / "silence_10s_16k.wav")
    blocks = open_audio(path, block_seconds=0.5).blocks()
    next(blocks)
    del blocks  # an abandoned iterator closes its stream
    s = open_audio(path, block_seconds=0.5)
    del s  # a stream never iterated nor closed stops its thread when collected
    gc.collect()
