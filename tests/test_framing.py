"""Framing matches YAMNet: counts from the formula, timestamps from integer offsets, streams equal whole arrays."""

import math

import numpy as np
import pytest

from yamnet_beam import framing
from yamnet_beam.framing import HOP_SAMPLES, WINDOW_SAMPLES

CASES = [0, 1, 15599, 15600, 15601, 23280, 23281, 16000 * 3600 + 17]


def reference_frames(x: np.ndarray, hop: int) -> list[np.ndarray]:
    """Independent, loop-based framing straight from YAMNet's definition."""
    n = len(x)
    count = 1 + math.ceil(max(0, n - WINDOW_SAMPLES) / hop)
    out = []
    for i in range(count):
        w = np.zeros(WINDOW_SAMPLES, np.float32)
        chunk = x[i * hop : i * hop + WINDOW_SAMPLES]
        w[: len(chunk)] = chunk
        out.append(w)
    return out


@pytest.mark.parametrize(
    "n,expected",
    [(0, 1), (1, 1), (15599, 1), (15600, 1), (15601, 2), (23280, 2), (23281, 3), (16000 * 3600 + 17, 7499)],
)
def test_num_frames_formula(n, expected):
    assert framing.num_frames(n) == expected


@pytest.mark.parametrize("n", CASES)
def test_frame_times_from_integer_offsets(n):
    count = framing.num_frames(n)
    start, end = framing.frame_times(0, count)
    i = count - 1
    assert start[i] == i * HOP_SAMPLES / 16000  # exact, not accumulated floating point
    assert np.all(end - start == pytest.approx(0.975))
    assert np.all(np.diff(start) == pytest.approx(0.48))
    # the last frame starts inside the audio (or at 0), so no frame is pure padding
    assert start[-1] * 16000 < max(n, 1)


@pytest.mark.parametrize("n", [0, 1, 15599, 15600, 15601, 23280, 23281, 100_000])
@pytest.mark.parametrize("hop", [HOP_SAMPLES, 1600, WINDOW_SAMPLES])
def test_frame_signal_matches_reference(n, hop):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    ref = reference_frames(x, hop)
    got = framing.frame_signal(x, hop)
    assert got.shape == (len(ref), WINDOW_SAMPLES)
    np.testing.assert_array_equal(got, np.stack(ref))


@pytest.mark.parametrize("n", [0, 1, 15601, 23281, 250_000])
@pytest.mark.parametrize("block", [7, 999, 7680, 160_000])
@pytest.mark.parametrize("max_batch", [1, 5, 256])
def test_stream_framer_equals_whole_signal(n, block, max_batch):
    x = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    batches = list(framing.frame_blocks((x[i : i + block] for i in range(0, n, block)), max_batch=max_batch))
    # consecutive numbering: no frame lost or duplicated
    firsts = [b.first_frame for b in batches]
    assert firsts == list(np.cumsum([0] + [len(b) for b in batches])[:-1])
    assert all(len(b) <= max_batch for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.frames for b in batches]), framing.frame_signal(x))


def test_stream_framer_holds_bounded_audio():
    framer = framing.StreamFramer()
    block = np.ones(160_000, np.float32)
    for _ in range(50):
        list(framer.push(block))
        assert len(framer._buf) < WINDOW_SAMPLES + HOP_SAMPLES  # never more than the unframed tail
    assert framer.frames_emitted == (50 * 160_000 - WINDOW_SAMPLES) // HOP_SAMPLES + 1


@pytest.mark.parametrize("n", [0, 1, 15600, 160_000, 160_000 + 7680, 80_001])
@pytest.mark.parametrize("blocks", [1, 3])
def test_a_final_push_equals_push_then_finish(n, blocks):
    """The last block pushed with ``final`` gives the frames of push + finish, in one span when they fit."""
    x = np.random.default_rng(5).standard_normal(n).astype(np.float32)
    parts = np.array_split(x, blocks)
    framer = framing.StreamFramer(max_batch=64)
    spans = [s for p in parts[:-1] for s in framer.push_spans(p)]
    last = [(s.first_frame, s.frames()) for s in framer.push_spans(parts[-1], final=True)]
    assert framer.finished and framer.total_samples == n
    got = [s.frames() for s in spans] + [f for _, f in last]
    np.testing.assert_array_equal(np.concatenate(got), framing.frame_signal(x))
    if blocks == 1:
        assert len(last) == 1  # a clip of one block: one span, so one front-end invoke
    with pytest.raises(RuntimeError, match="new StreamFramer"):
        list(framer.push_spans(x[:1]))


@pytest.mark.parametrize("n,block", [(160_000 * 5 + 321, 160_000), (16000 * 30, 7000), (15600, 15600)])
@pytest.mark.parametrize("multiple", [1, 4, 3])
@pytest.mark.parametrize("end", ["finish", "flush"])
def test_whole_batch_pushes_hold_back_only_the_rest(n, block, multiple, end):
    """Pushes with ``whole`` yield whole multiples of frames; the rest comes with a later push or the end."""
    x = np.random.default_rng(9).standard_normal(n).astype(np.float32)
    framer = framing.StreamFramer(max_batch=12 * multiple, multiple=multiple)
    got = []
    for i in range(0, n, block):
        for span in framer.push_spans(x[i : i + block], whole=True):
            assert span.count % multiple == 0
            got.append(span.frames())
        assert len(framer._buf) < WINDOW_SAMPLES + (block + multiple * HOP_SAMPLES)  # memory stays bounded
    tail = framer.finish_spans() if end == "finish" else framer.flush_spans()
    got += [s.frames() for s in tail]
    want = framing.frame_signal(x)
    if end == "flush":  # a segment's end: the complete frames only, none padded
        want = want[: (n - WINDOW_SAMPLES) // HOP_SAMPLES + 1]
    np.testing.assert_array_equal(np.concatenate(got), want)


def test_multiple_must_divide_the_span():
    with pytest.raises(ValueError, match="multiple"):
        framing.StreamFramer(max_batch=10, multiple=4)


def test_a_final_push_does_not_change_the_callers_block():
    block = np.arange(20_000, dtype=np.float32)
    list(framing.StreamFramer().push_spans(block, final=True))
    np.testing.assert_array_equal(block, np.arange(20_000, dtype=np.float32))


@pytest.mark.parametrize(
    "n,expected_last", [(0, 0), (1, 1), (15600, 15600), (15601, 15601 - HOP_SAMPLES), (23281, 23281 - 2 * HOP_SAMPLES)]
)
def test_valid_samples_marks_padding(n, expected_last):
    count = framing.num_frames(n)
    valid = framing.valid_samples(0, count, n)
    assert valid[-1] == expected_last
    assert np.all(valid[:-1] == WINDOW_SAMPLES)


@pytest.mark.parametrize(
    "hop_s,samples", [(0.48, 7680), (0.975, 15600), (0.01, 160), (0, None), (-1, None), (1.0, None)]
)
def test_hop_validation(hop_s, samples):
    if samples is not None:
        assert framing.hop_samples_from_seconds(hop_s) == samples
    else:
        with pytest.raises(ValueError, match="hop"):
            framing.hop_samples_from_seconds(hop_s)


@pytest.mark.parametrize("n", [0, 15600, 100_000, 16000 * 65, 16000 * 3600 + 123])
@pytest.mark.parametrize("shard,quantum", [(16000 * 30, 1), (16000 * 10, 160), (50_000, 320), (1, 1)])
def test_segments_partition_the_frames(n, shard, quantum):
    bounds = framing.segment_bounds(n, shard, quantum=quantum)
    frames = []
    for start, stop, first in bounds:
        assert start % HOP_SAMPLES == 0 and start % quantum == 0 and first == start // HOP_SAMPLES
        end = n if stop is None else stop
        # frames starting in the segment: all of them must fit in what it reads
        count = framing.num_frames(end - start) if stop is None else (stop - start - WINDOW_SAMPLES) // HOP_SAMPLES + 1
        frames += list(range(first, first + count))
    assert frames == list(range(framing.num_frames(n)))  # none lost, none duplicated
    assert bounds[-1][1] is None and all(b[1] is not None for b in bounds[:-1])


def test_segmented_frames_equal_whole_signal_frames():
    x = np.random.default_rng(3).standard_normal(16000 * 50 + 77).astype(np.float32)
    whole = framing.frame_signal(x)
    pieces = []
    for start, stop, first in framing.segment_bounds(len(x), 16000 * 7, quantum=160):
        framer = framing.StreamFramer()
        seg = x[start:stop]
        batches = list(framer.push(seg)) + (list(framer.finish()) if stop is None else [])
        for b in batches:  # numbered from the segment's first frame: each batch continues where the last ended
            assert b.first_frame >= 0 and first + b.first_frame == sum(len(p) for p in pieces)
            pieces.append(b.frames)
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
