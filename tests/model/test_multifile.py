"""Many files through one MultiFileStream: each file's results equal per-frame invoke of that file alone, bit for
bit, whichever files shared a CNN batch or the front end's helper thread."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.support.fakes import FakeModel
from yamnet_beam.framing import HOP_SAMPLES, frame_signal, num_frames
from yamnet_beam.model import YamnetModel, multifile, open_multi_stream
from yamnet_beam.model.batched import Pair
from yamnet_beam.model.multifile import per_frame_multi_stream


@pytest.fixture(scope="module")
def model(model_path: Path) -> YamnetModel:
    return YamnetModel(model_path.read_bytes())


@pytest.fixture(scope="module")
def reference(model_path: Path) -> YamnetModel:
    """One invoke of the whole graph per [1, 15600] frame."""
    return YamnetModel(model_path.read_bytes(), batched=False)


@pytest.fixture(scope="module")
def clips(fixtures_dir: Path) -> list[np.ndarray]:
    """Real speech cut into files of awkward lengths: shorter than a window, one window, 2.5 s, 10 s, 31 s."""
    x, sr = sf.read(fixtures_dir / "speech_16k_float32.wav", dtype="float32")
    assert sr == 16000
    x = np.tile(x, int(np.ceil(31.5 * sr / len(x))))
    lengths = [4_800, 15_600, 40_000, 160_000, 496_123, 0, 160_000]
    starts = np.cumsum([0, *lengths[:-1]]) % (len(x) - max(lengths))
    return [x[s : s + n] * g for s, n, g in zip(starts, lengths, (1.0, 0.5, 1.2, 0.8, 1.0, 1.0, 0.3), strict=True)]


def _through(stream, signals: list[np.ndarray], block: int) -> dict[int, list]:
    """Pushes every signal in blocks (the last with ``final``), one file after another; results by key."""
    got: dict[int, list] = {i: [] for i in range(len(signals))}
    with stream:
        for i, x in enumerate(signals):
            stream.begin(i)
            blocks = [x[j : j + block] for j in range(0, len(x), block)] or [x]
            for k, b in enumerate(blocks):
                for r in stream.push(b, final=k == len(blocks) - 1):
                    got[r.key].append(r)
        for r in stream.drain():
            got[r.key].append(r)
    return got


def _joined(results: list) -> Pair:
    return np.concatenate([r.scores for r in results]), np.concatenate([r.embeddings for r in results])


@pytest.mark.parametrize(("batch", "block"), [(4, 160_000), (3, 37_000), (1, 500_000), (16, 160_000)])
def test_each_file_equals_per_frame_invoke_of_it_alone(model, reference, clips, batch, block) -> None:
    got = _through(model.multi_stream(HOP_SAMPLES, batch), clips, block)
    for i, x in enumerate(clips):
        results = got[i]
        firsts = [r.first_frame for r in results]
        assert firsts == list(np.cumsum([0] + [len(r) for r in results[:-1]])), f"file {i}: frames out of order"
        want = reference.predict(frame_signal(x))
        s, e = _joined(results)
        assert s.shape == want[0].shape == (num_frames(len(x)), 521), i
        assert np.array_equal(s, want[0]) and np.array_equal(e, want[1]), f"file {i}: differs from per-frame invoke"
        assert results[-1].total_samples == len(x)


def test_files_share_cnn_batches_and_results_wait_for_them(model, clips) -> None:
    """A 2.5 s file is 5 frames: at batch 4 its last frame waits for the next file's first three."""
    stream = model.multi_stream(HOP_SAMPLES, 4)
    with stream:
        stream.begin("a")
        out_a = stream.push(clips[2], final=True)
        stream.begin("b")
        out_b = stream.push(clips[3], final=True)  # 20 frames: a's last frame now shares a batch with b's first
        rest = stream.drain()
    both = out_a + out_b + rest
    assert sum(len(r) for r in both if r.key == "a") == 5 and sum(len(r) for r in both if r.key == "b") == 20
    assert sum(len(r) for r in out_a) <= 4  # never a partial batch before the drain
    assert [r.key for r in both] == sorted((r.key for r in both), key="ab".index)  # in the order pushed


def test_a_per_frame_model_streams_the_same_frames(clips) -> None:
    fake = FakeModel()
    got = _through(open_multi_stream(fake, HOP_SAMPLES, 4), clips, 50_000)
    assert fake.calls == -(-sum(num_frames(len(x)) for x in clips) // 4)  # whole batches of 4 across files
    for i, x in enumerate(clips):
        s, e = _joined(got[i])
        ws, we = FakeModel().predict(frame_signal(x))
        assert np.array_equal(e, we)  # the fake's embedding is its input: exact
        np.testing.assert_allclose(s, ws, rtol=1e-6)  # its scores are a BLAS product, whose rounding follows the batch


@pytest.mark.parametrize("hop", [HOP_SAMPLES, 7681])
def test_cut_then_end_equals_the_whole_file(model, reference, clips, hop) -> None:
    """A segment's end (cut: complete frames, unpadded), then the end, give the whole file's frames."""
    x = clips[4]
    with model.multi_stream(hop, 4) as stream:
        stream.begin(0)
        results = stream.push(x[:200_000]) + stream.cut()
        assert not stream.finished
        results += stream.push(x[200_000:]) + stream.end() + stream.drain()
    s, e = _joined(results)
    want = reference.predict(frame_signal(x, hop))
    assert np.array_equal(s, want[0]) and np.array_equal(e, want[1])


def _pushed_with(model, x: np.ndarray, waits: set[int]) -> tuple[list, list[bool]]:
    """Pushes ``x`` in 40,000-sample blocks, reporting a long wait for input before the blocks in ``waits``;
    returns the results and, after each push, whether the helper computes the front end."""
    used, results = [], []
    with model.multi_stream(HOP_SAMPLES, 4) as stream:
        stream.begin(0)
        for k, j in enumerate(range(0, len(x), 40_000)):
            stream.waited(10.0 if k in waits else 0.0)
            results += stream.push(x[j : j + 40_000], final=j + 40_000 >= len(x))
            used.append(stream.use_helper)
        results += stream.drain()
    return results, used


def test_the_front_end_moves_to_the_caller_while_it_waits_for_input(model, reference, clips, monkeypatch) -> None:
    """A caller that waits for its input (decoding is the bottleneck) takes the front end back from the helper,
    and gives it back once it waits no more; not a bit changes."""
    monkeypatch.setattr(multifile, "_DECIDE_S", 0.0)  # decide at every push
    monkeypatch.setattr(multifile._IdleCores, "since_last", lambda self: 1.0)  # a core idle, whatever the machine does
    results, used = _pushed_with(model, clips[4], waits={2, 3})
    assert used[:5] == [True, True, False, False, True] and all(used[5:])
    s, e = _joined(results)
    want = reference.predict(frame_signal(clips[4]))
    assert np.array_equal(s, want[0]) and np.array_equal(e, want[1])


def test_the_front_end_leaves_the_helper_while_no_core_is_idle(model, reference, clips, monkeypatch) -> None:
    """With no core idle two windows running (other workers hold them) the helper only costs: the caller
    computes the front end until a core is idle again; not a bit changes."""
    monkeypatch.setattr(multifile, "_DECIDE_S", 0.0)
    idle = iter([1.0, 0.1, 1.0, 0.1, 0.1, 0.3, 0.1, 0.9, 0.9] + [1.0] * 100)
    monkeypatch.setattr(multifile._IdleCores, "since_last", lambda self: next(idle))
    results, used = _pushed_with(model, clips[4], waits=set())
    # one window without an idle core is not enough; two are; it comes back when more than half a core is idle
    assert used[:9] == [True, True, True, True, False, False, False, True, True]
    s, e = _joined(results)
    want = reference.predict(frame_signal(clips[4]))
    assert np.array_equal(s, want[0]) and np.array_equal(e, want[1])


def test_idle_cores_reads_the_machine() -> None:
    idle = multifile._IdleCores()
    time.sleep(0.2)
    value = idle.since_last()
    if not Path("/proc/stat").exists():
        assert value is None
    else:
        assert value is not None and 0.0 <= value <= (os.cpu_count() or 1) + 0.5


def test_a_failure_reaches_the_caller_and_discard_names_the_queued_files(clips) -> None:
    fake = FakeModel()
    calls = {"n": 0}

    def predict(frames):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("interpreter crashed")
        return fake.predict(frames)

    stream = per_frame_multi_stream(predict, HOP_SAMPLES, 4)
    stream.begin("short")
    assert stream.push(clips[2], final=True) != []  # 5 frames: one batch out, one frame queued
    stream.begin("ten")
    with pytest.raises(RuntimeError, match="crashed"):
        stream.push(clips[3], final=True)
    assert stream.discard() == {"short", "ten"}
    stream.begin("next")  # the stream goes on after a discard
    out = stream.push(clips[1], final=True) + stream.drain()
    assert [(r.key, len(r)) for r in out] == [("next", 1)]
    stream.close()


def test_push_before_begin_is_an_error(model) -> None:
    with model.multi_stream() as stream, pytest.raises(RuntimeError, match="begin"):
        stream.push(np.zeros(16000, np.float32))
