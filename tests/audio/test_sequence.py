"""One decode thread for many files: each file's stream equals :func:`open_audio` of it alone, failures stay
the file's own, the thread runs a bounded number of files ahead, and nothing outlives the iterator."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.helpers import decode_threads
from yamnet_beam.audio import AudioDecodeError, AudioStream, decode_file, decoders, open_audio_files

NAMES = [
    "speech_22k_mono.wav",
    "bad_empty.wav",
    "missing.wav",
    "tone_1khz_16k.wav",
    "speech_48k_stereo.flac",
    "bad_truncated.flac",
    "short_0.3s_16k.wav",
]


def _read(stream: AudioStream) -> tuple[np.ndarray, AudioDecodeError | None]:
    blocks: list[np.ndarray] = []
    try:
        blocks.extend(stream.blocks())
    except AudioDecodeError as e:
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32), e
    return np.concatenate(blocks), None


def _alone(path: Path) -> tuple[np.ndarray | None, str | None]:
    """What a file decoded on its own gives: its signal, or its error kind."""
    try:
        return decode_file(str(path))[0], None
    except AudioDecodeError as e:
        return None, e.kind


@pytest.mark.parametrize("block_seconds", [10.0, 0.7])
def test_each_file_equals_its_own_decode_and_errors_stay_its_own(fixtures_dir, no_leaked_threads, block_seconds):
    paths = [fixtures_dir / n for n in NAMES]
    got = []
    for path, item in zip(paths, open_audio_files([str(p) for p in paths], block_seconds=block_seconds), strict=True):
        if isinstance(item, AudioStream):
            signal, error = _read(item)
            got.append((signal if error is None else None, None if error is None else error.kind))
        else:
            assert isinstance(item, AudioDecodeError) and path.name in str(item)
            got.append((None, item.kind))
    for path, (signal, kind) in zip(paths, got, strict=True):
        want_signal, want_kind = _alone(path)
        assert kind == want_kind, path.name
        if want_signal is not None:
            np.testing.assert_array_equal(signal, want_signal, err_msg=path.name)
    assert [k for _, k in got] == [None, "empty_file", "io_error", None, None, "corrupt", None]


def test_the_thread_runs_at_most_files_ahead_and_a_stream_closed_early_is_skipped(
    fixtures_dir, monkeypatch, no_leaked_threads
):
    opened: list[str] = []
    real = decoders.open_source

    def recording(uri, *args):
        opened.append(Path(uri).name)
        return real(uri, *args)

    monkeypatch.setattr(decoders, "open_source", recording)
    names = ["tone_1khz_16k.wav", "speech_22k_mono.wav", "silence_10s_16k.wav", "short_0.3s_16k.wav"]
    files = open_audio_files([str(fixtures_dir / n) for n in names], files_ahead=2)
    first = next(files)
    time.sleep(0.5)
    assert opened == names[:2]  # the file being read and one ahead; the third waits for a slot
    assert first.info.sample_rate == 16000  # read its header only: asking for the next closes it
    second = next(files)
    third = next(files)  # the second, never read, was closed when the third was asked for
    assert opened == names[:3] or opened == names[:4]
    np.testing.assert_array_equal(_read(third)[0], decode_file(str(fixtures_dir / names[2]))[0])
    assert second._worker is None  # closed
    files.close()  # stops the thread mid-way: it ends, and the fixture finds no thread left


def test_a_file_that_hangs_times_out_and_the_next_files_still_decode(fixtures_dir, monkeypatch, no_leaked_threads):
    gate = threading.Event()
    real = decoders.open_source

    def hanging(uri, *args):
        if uri.endswith("speech_22k_mono.wav"):
            gate.wait()  # a read that never returns, until the test ends
        return real(uri, *args)

    monkeypatch.setattr(decoders, "open_source", hanging)
    names = ["tone_1khz_16k.wav", "speech_22k_mono.wav", "short_0.3s_16k.wav", "speech_48k_stereo.flac"]
    t0 = time.monotonic()
    items = list(open_audio_files([str(fixtures_dir / n) for n in names], timeout_s=0.5))
    assert isinstance(items[1], AudioDecodeError) and items[1].kind == "timeout"
    assert "stopped while opening" in str(items[1])
    assert time.monotonic() - t0 < 0.5 + 5.0
    for name, item in zip(names, items, strict=True):
        if name != names[1]:
            assert isinstance(item, AudioStream), name
    # the files after the hung one were decoded by a new thread (the stuck one is left behind, as a lone file's)
    for name in names[2:]:
        item = next(i for n, i in zip(names, items, strict=True) if n == name)
        assert item._worker is None  # closed by the iterator, which asked for the next
    gate.set()  # the stuck thread wakes up, sees it was retired, closes the file and ends
    for t in decode_threads():
        t.join(10)


def test_files_after_a_hung_one_are_decoded_whole(fixtures_dir, monkeypatch, no_leaked_threads):
    gate = threading.Event()
    real = decoders.open_source

    def hanging(uri, *args):
        if uri.endswith("tone_1khz_16k.wav"):
            gate.wait()
        return real(uri, *args)

    monkeypatch.setattr(decoders, "open_source", hanging)
    names = ["tone_1khz_16k.wav", "speech_22k_mono.wav", "speech_48k_stereo.flac"]
    got = []
    for item in open_audio_files([str(fixtures_dir / n) for n in names], timeout_s=0.5):
        got.append(_read(item)[0] if isinstance(item, AudioStream) else item.kind)
    assert got[0] == "timeout"
    for name, signal in zip(names[1:], got[1:], strict=True):
        np.testing.assert_array_equal(signal, decode_file(str(fixtures_dir / name))[0], err_msg=name)
    gate.set()
    for t in decode_threads():
        t.join(10)


def test_bad_arguments_fail_before_any_thread_starts(no_leaked_threads):
    with pytest.raises(ValueError, match="files_ahead"):
        next(open_audio_files(["x.wav"], files_ahead=0))
    with pytest.raises(ValueError, match="block_seconds"):
        next(open_audio_files(["x.wav"], block_seconds=0))


def test_no_files_yield_nothing_and_leave_no_thread(no_leaked_threads):
    assert list(open_audio_files([])) == []  # the thread it started found no file and ended (the fixture checks)
