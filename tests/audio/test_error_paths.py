"""Decode failures that the fixtures never reach: errors crossing process boundaries, containers PyAV opens
that hold no audio stream, or an audio stream with no samples."""

from __future__ import annotations

import pickle

import av
import cloudpickle
import numpy as np
import pytest
from apache_beam.internal import pickler

from yamnet_beam.audio import ERROR_KINDS, AudioDecodeError, open_audio


@pytest.mark.parametrize("kind", sorted(ERROR_KINDS))
@pytest.mark.parametrize(
    "dumps,loads",
    [(pickle.dumps, pickle.loads), (cloudpickle.dumps, pickle.loads), (pickler.dumps, pickler.loads)],
    ids=["pickle", "cloudpickle", "beam-pickler"],
)
def test_decode_errors_survive_pickling_with_their_kind(kind, dumps, loads):
    """Beam ships a worker's exception to the launcher pickled: the kind must survive, or the row says 'internal'."""
    e = AudioDecodeError(kind, f"/a/caf\u00e9.wav: {kind} happened")
    back = loads(dumps(e))
    assert type(back) is AudioDecodeError
    assert (back.kind, back.message, str(back)) == (kind, e.message, str(e))


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown AudioDecodeError kind 'oops'"):
        AudioDecodeError("oops", "x")


def _video_frames(container, stream, n=5):
    for _ in range(n):
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def _video_stream(container):
    v = container.add_stream("mpeg4", rate=10)
    v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
    return v


def test_a_container_without_an_audio_stream_is_no_audio(tmp_path):
    path = tmp_path / "video_only.mkv"
    with av.open(str(path), "w") as c:
        _video_frames(c, _video_stream(c))
    with pytest.raises(AudioDecodeError) as e:
        with open_audio(str(path)) as s:
            list(s.blocks())
    assert e.value.kind == "no_audio" and "container has no audio stream" in str(e.value)
    assert str(path) in str(e.value)


def test_an_audio_stream_without_samples_is_no_audio(tmp_path):
    path = tmp_path / "silent_track.mkv"
    with av.open(str(path), "w") as c:
        v = _video_stream(c)
        a = c.add_stream("pcm_s16le", rate=16000)
        a.layout = "mono"
        _video_frames(c, v)  # the audio track is declared, never written
    with pytest.raises(AudioDecodeError) as e:
        with open_audio(str(path)) as s:
            list(s.blocks())
    assert e.value.kind == "no_audio" and "stream contains no audio samples" in str(e.value)
