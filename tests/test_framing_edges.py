"""Framing edges the formula tests leave open: segment boundaries at the exact sample, odd hops, batch sizes.

Expectations are the documented rules, written out here: segments of ``floor(shard / hop) * hop`` samples
(at least one hop), each reading ``window - hop`` beyond its end, a new segment only while audio remains
past that read.
"""

from __future__ import annotations

import numpy as np
import pytest

from yamnet_beam import framing

W, H = 15600, 7680


@pytest.mark.parametrize("shard", [10 * 16000, 5 * H, 5 * H + 1, 6 * H - 1])
def test_segment_length_is_the_shard_rounded_down_to_hops(shard):
    length = shard // H * H
    bounds = framing.segment_bounds(10 * length, shard)
    assert [b[0] for b in bounds] == [i * length for i in range(len(bounds))]
    assert all(stop == start + length + W - H for start, stop, _ in bounds[:-1])
    assert [b[2] for b in bounds] == [start // H for start, _, _ in bounds]


@pytest.mark.parametrize("extra,segments", [(0, 1), (1, 2)])
def test_a_new_segment_starts_only_when_audio_remains_past_the_read(extra, segments):
    length = 4 * H
    n = length + W - H + extra  # exactly what the first segment reads, or one sample more
    bounds = framing.segment_bounds(n, length)
    assert len(bounds) == segments and bounds[-1][1] is None


def test_an_odd_hop_needs_no_quantum_by_default():
    hop = 7681
    bounds = framing.segment_bounds(50 * hop, 5 * hop, hop=hop)
    assert bounds[1][0] == 5 * hop  # lcm(hop, 1): no rounding to an even number of samples
    assert framing.segment_bounds(50 * hop, 5 * hop, hop=hop, quantum=2)[1][0] == 4 * hop  # lcm = 2 * hop


@pytest.mark.parametrize("n", [W, W + 300 * H])
def test_frame_blocks_batches_at_most_256_frames_by_default(n):
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    batches = list(framing.frame_blocks([x]))  # one block: only max_batch cuts it
    sizes = [len(b.frames) for b in batches]
    assert sum(sizes) == framing.num_frames(n) and max(sizes) == min(256, framing.num_frames(n))
