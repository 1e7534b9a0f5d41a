"""DoFns driven by hand: setup() builds the model, process() turns one file into frames tables and one files row."""

import pickle

import numpy as np
import pyarrow as pa
import pytest
from apache_beam.pvalue import TaggedOutput

from tests.fakes import FakeModel, FakeModelLoader
from yamnet_beam import framing, schema
from yamnet_beam.audio import decode_file
from yamnet_beam.inputs import InputFile
from yamnet_beam.transforms import FILES_TAG, ModelLoader, _ConcatTablesFn, _EmbedAudioFn

LABELS = [f"class{i}" for i in range(521)]


def _run_fn(fn, path, size=None):
    frames, files = [], []
    for out in fn.process(InputFile(str(path), size)):
        if isinstance(out, TaggedOutput):
            assert out.tag == FILES_TAG
            files.append(out.value)
        else:
            frames.append(out)
    return frames, files


def _fn(loader=None, **kw):
    fn = _EmbedAudioFn(loader or FakeModelLoader(), LABELS, schema.frames_schema(), **kw)
    fn.setup()
    return fn


def test_dofn_pickles_without_model_state():
    fn = _EmbedAudioFn(ModelLoader("/nonexistent/model.tflite"), LABELS, schema.frames_schema())
    clone = pickle.loads(pickle.dumps(fn))  # nothing heavy is built before setup()
    assert clone._model is None and clone._model_loader.uri == "/nonexistent/model.tflite"


@pytest.mark.parametrize(
    "name", ["speech_22k_mono.wav", "speech_48k_stereo.flac", "short_0.3s_16k.wav", "exact_one_frame_16k.wav"]
)
def test_ok_file_frames_follow_formula_and_model(fixtures_dir, name):
    path = fixtures_dir / name
    fn = _fn(frames_per_batch=7)
    frames, files = _run_fn(fn, path, size=path.stat().st_size)
    audio, info, duration = decode_file(str(path))
    expected = framing.num_frames(len(audio))
    table = pa.concat_tables(frames)
    assert table.column("frame").to_pylist() == list(range(expected))
    assert all(t.num_rows <= 7 for t in frames)
    # independent expectation: the fake model on frames cut from the whole decoded file
    ref_scores, ref_emb = FakeModel().predict(framing.frame_signal(audio))
    got_scores = table.column("scores").combine_chunks().flatten().to_numpy().reshape(-1, 521)
    np.testing.assert_allclose(got_scores, ref_scores, atol=1e-6)
    np.testing.assert_array_equal(
        table.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, 1024), ref_emb
    )
    assert table.column("valid_samples").to_pylist()[-1] == len(audio) - (expected - 1) * framing.HOP_SAMPLES
    [row] = files
    assert row["status"] == "ok" and row["error"] is None
    assert row["frames"] == expected
    assert row["sample_rate"] == info.sample_rate and row["channels"] == info.channels
    assert row["duration_s"] == pytest.approx(duration)
    assert row["size_bytes"] == path.stat().st_size


@pytest.mark.parametrize(
    "name,kind",
    [
        ("bad_empty.wav", "empty_file"),
        ("bad_text.wav", "unsupported_format"),
        ("bad_truncated.flac", "corrupt"),
    ],
)
def test_bad_file_becomes_error_row(fixtures_dir, name, kind):
    frames, files = _run_fn(_fn(), fixtures_dir / name)
    [row] = files
    assert row["status"] == "error" and row["error_kind"] == kind
    assert name in row["error"]  # the reason names the file
    assert row["frames"] == sum(t.num_rows for t in frames)
    assert row["size_bytes"] == (fixtures_dir / name).stat().st_size  # filled in when matching did not know it


def test_missing_file_is_io_error(tmp_path):
    _, [row] = _run_fn(_fn(), tmp_path / "gone.wav")
    assert row["status"] == "error" and row["error_kind"] == "io_error"


def test_model_failure_still_yields_a_row(fixtures_dir):
    class Broken(FakeModelLoader):
        def load(self):
            model = FakeModel()
            model.predict = lambda frames: (_ for _ in ()).throw(RuntimeError("interpreter exploded"))
            return model

    _, [row] = _run_fn(_fn(Broken()), fixtures_dir / "tone_1khz_16k.wav")
    assert row["status"] == "error" and row["error_kind"] == "internal"
    assert "interpreter exploded" in row["error"]


def test_real_model_equals_direct_interpreter(fixtures_dir, model_path):
    """Pipeline numbers equal a plain LiteRT call on the same 16 kHz frames (embedding exposed by rewrite)."""
    from ai_edge_litert.interpreter import Interpreter

    path = fixtures_dir / "speech_16k_float32.wav"
    frames, _ = _run_fn(_fn(ModelLoader(str(model_path)), frames_per_batch=5), path)
    table = pa.concat_tables(frames)
    audio, _, _ = decode_file(str(path))
    interp = Interpreter(model_path=str(model_path), num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    out = next(d["index"] for d in interp.get_output_details() if tuple(d["shape"]) == (1, 521))
    expected = []
    for frame in framing.frame_signal(audio):
        interp.set_tensor(inp, frame[None, :])
        interp.invoke()
        expected.append(interp.get_tensor(out)[0].copy())
    got = table.column("scores").combine_chunks().flatten().to_numpy().reshape(-1, 521)
    np.testing.assert_allclose(got, np.stack(expected), atol=1e-5)
    assert table.column("top_label").to_pylist() == [LABELS[i] for i in np.stack(expected).argmax(axis=1)]


def test_concat_tables_fn_rebatches_without_losing_rows():
    fn = _ConcatTablesFn(target_rows=10)
    fn.start_bundle()
    tables = [pa.table({"x": list(range(i, i + 4))}) for i in range(0, 40, 4)]
    out = [t for table in tables for t in fn.process(table)]
    out += [wv.value for wv in fn.finish_bundle()]
    assert [t.num_rows for t in out] == [12, 12, 12, 4]
    assert pa.concat_tables(out).column("x").to_pylist() == list(range(40))
