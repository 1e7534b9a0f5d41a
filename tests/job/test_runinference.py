"""YamnetModelHandler in RunInference equals YamnetModel.predict; one interpreter per thread."""

from __future__ import annotations

import threading

import apache_beam as beam
import numpy as np
import pytest
import soundfile as sf
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from yamnet_beam import framing
from yamnet_beam.job.runinference import YamnetModelHandler, check_example
from yamnet_beam.model import YamnetModel
from yamnet_beam.model.loader import PerThreadYamnet


@pytest.fixture(scope="module")
def waveforms(fixtures_dir):
    speech, _ = sf.read(fixtures_dir / "speech_16k_float32.wav", dtype="float32")
    tone, _ = sf.read(fixtures_dir / "tone_1khz_16k.wav", dtype="float32")
    short = np.zeros(4000, np.float32)  # shorter than one window: one padded frame
    return [speech, tone, short]


def test_run_inference_matches_predict(model_path, waveforms):
    direct = YamnetModel.from_uri(str(model_path))
    expected = [direct.predict(framing.frame_signal(w)) for w in waveforms]
    frames_batch = framing.frame_signal(waveforms[1])[:3]  # a [F, 15600] example
    expected.append(direct.predict(frames_batch))
    examples = [*waveforms, frames_batch]

    def check(results):
        results = sorted(results, key=lambda r: (r.example.ndim, len(r.example)))
        wanted = sorted(zip(examples, expected, strict=True), key=lambda e: (e[0].ndim, len(e[0])))
        assert len(results) == len(wanted)
        for r, (example, (scores, emb)) in zip(results, wanted, strict=True):
            np.testing.assert_array_equal(r.example, example)
            assert r.inference["scores"].shape == scores.shape
            np.testing.assert_array_equal(r.inference["scores"], scores)
            np.testing.assert_array_equal(r.inference["embeddings"], emb)
            assert r.model_id == str(model_path)

    with TestPipeline() as p:
        results = (
            p
            | beam.Create(examples, reshuffle=False)
            | RunInference(YamnetModelHandler(str(model_path), max_batch_size=2))
        )
        assert_that(results, check)


def test_per_thread_model_gives_each_thread_its_own_interpreter(model_path, waveforms):
    shared = PerThreadYamnet(str(model_path))
    frames = framing.frame_signal(waveforms[0])
    expected = YamnetModel.from_uri(str(model_path)).predict(frames)
    seen, results, errors = {}, {}, []

    def work(i):
        try:
            seen[i] = shared.model()  # kept alive, so no two models can share an id() by reuse
            results[i] = shared.predict(frames)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({id(m) for m in seen.values()}) == 4
    assert all(shared.model() is not m for m in seen.values())
    for scores, emb in results.values():  # concurrent use gives the single-threaded numbers
        np.testing.assert_array_equal(scores, expected[0])
        np.testing.assert_array_equal(emb, expected[1])


def test_bad_examples_and_args(model_path):
    with pytest.raises(ValueError, match="1-D 16 kHz mono waveform"):
        check_example(np.zeros((2, 100), np.float32))
    handler = YamnetModelHandler(str(model_path))
    with pytest.raises(ValueError, match="inference_args"):
        list(handler.run_inference([np.zeros(16000, np.float32)], handler.load_model(), {"x": 1}))
    assert handler.get_num_bytes([np.zeros(10, np.float32)]) == 40
