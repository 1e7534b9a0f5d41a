"""DoFns driven by hand: setup() builds the model, process() turns one file into frames tables and one files row."""

import pickle

import apache_beam as beam
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.support.fakes import FailingModelLoader, FailingOnCallLoader, FakeModel, FakeModelLoader
from yamnet_beam import framing
from yamnet_beam.audio import decode_file
from yamnet_beam.job.embed import _EmbedPartFn
from yamnet_beam.job.frames import EmbedSettings
from yamnet_beam.job.inputs import InputFile
from yamnet_beam.job.parts import Part
from yamnet_beam.model.loader import ModelLoader
from yamnet_beam.table import schema

LABELS = [f"class{i}" for i in range(521)]


def _fn(out, loader=None, **kw):
    fn = _EmbedPartFn(
        loader or FakeModelLoader(),
        LABELS,
        schema.frames_schema(metadata={"k": "v"}),
        schema.files_schema(),
        str(out),
        EmbedSettings(fingerprint="fp", **kw),
    )
    fn.setup()
    return fn


def _run_fn(fn, out, *paths, part_id="p1"):
    """Drives process() on one part and reads back what it committed."""
    rows = list(fn.process(Part(part_id, tuple(InputFile(str(p)) for p in paths))))
    frames_file = out / "frames" / f"part-{part_id}.parquet"
    frames = pq.read_table(frames_file) if frames_file.exists() else None
    files = pq.read_table(out / "files" / f"part-{part_id}.parquet").to_pylist()
    assert files == rows  # what is yielded is what was committed
    return frames, rows


def test_dofn_pickles_without_model_state(tmp_path):
    fn = _EmbedPartFn(
        ModelLoader("/nonexistent/model.tflite"),
        LABELS,
        schema.frames_schema(),
        schema.files_schema(),
        str(tmp_path),
        EmbedSettings(),
    )
    clone = pickle.loads(pickle.dumps(fn))  # nothing heavy is built before setup()
    assert clone._model is None and clone._model_loader.uri == "/nonexistent/model.tflite"


@pytest.mark.parametrize(
    "name", ["speech_22k_mono.wav", "speech_48k_stereo.flac", "short_0.3s_16k.wav", "exact_one_frame_16k.wav"]
)
def test_ok_file_frames_follow_formula_and_model(fixtures_dir, tmp_path, name):
    path = fixtures_dir / name
    fn = _fn(tmp_path, frames_per_batch=7, row_group_rows=10)
    table, files = _run_fn(fn, tmp_path, path)
    audio, info, duration = decode_file(str(path))
    expected = framing.num_frames(len(audio))
    assert table.column("frame").to_pylist() == list(range(expected))
    meta = pq.ParquetFile(tmp_path / "frames" / "part-p1.parquet").metadata
    assert all(meta.row_group(i).num_rows <= 10 + 7 for i in range(meta.num_row_groups))
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
    assert row["size_bytes"] == path.stat().st_size and row["mtime"] == path.stat().st_mtime
    assert row["fingerprint"] == "fp" and row["part"] == "p1"
    assert (row["warning"] is not None) == (len(audio) < framing.WINDOW_SAMPLES)


@pytest.mark.parametrize(
    "name,kind",
    [
        ("bad_empty.wav", "empty_file"),
        ("bad_text.wav", "unsupported_format"),
        ("bad_truncated.flac", "corrupt"),
    ],
)
def test_bad_file_becomes_error_row(fixtures_dir, tmp_path, name, kind):
    frames, files = _run_fn(_fn(tmp_path), tmp_path, fixtures_dir / name)
    [row] = files
    assert row["status"] == "error" and row["error_kind"] == kind
    assert row["path"].endswith(name) and name not in row["error"]  # the row names the file, its reason does not
    assert len(row["error"]) > 10
    assert row["frames"] == (frames.num_rows if frames is not None else 0)
    assert row["size_bytes"] == (fixtures_dir / name).stat().st_size  # filled in when matching did not know it


def test_missing_file_is_io_error(tmp_path):
    _, [row] = _run_fn(_fn(tmp_path), tmp_path, tmp_path / "gone.wav")
    assert row["status"] == "error" and row["error_kind"] == "io_error"


def test_part_with_good_and_bad_files_commits_all_rows(fixtures_dir, tmp_path):
    names = ["tone_1khz_16k.wav", "bad_text.wav", "short_0.3s_16k.wav"]
    frames, rows = _run_fn(_fn(tmp_path), tmp_path, *(fixtures_dir / n for n in names))
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert frames.num_rows == sum(r["frames"] for r in rows)
    assert not list((tmp_path / "_tmp").iterdir())  # no temp file left behind


def test_failed_part_commits_nothing(fixtures_dir, tmp_path):
    """A part that dies mid-way (worker crash, retry) leaves no file a reader would pick up."""

    fn = _fn(tmp_path, FailingModelLoader(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        list(fn.process(Part("p9", (InputFile(str(fixtures_dir / "tone_1khz_16k.wav")),))))
    assert not (tmp_path / "files").exists() and not (tmp_path / "frames").exists()
    assert not list((tmp_path / "_tmp").glob("*.parquet"))


def test_model_failure_still_yields_a_row(fixtures_dir, tmp_path):
    _, [row] = _run_fn(
        _fn(tmp_path, FailingModelLoader(RuntimeError("interpreter exploded"))),
        tmp_path,
        fixtures_dir / "tone_1khz_16k.wav",
    )
    assert row["status"] == "error" and row["error_kind"] == "internal"
    assert "interpreter exploded" in row["error"]


def test_files_of_a_part_share_batches_and_a_model_failure_names_every_file_it_cost(tmp_path):
    """Frames of consecutive files share CNN batches: a batch that fails holds the first file's last frame
    and the second's first ones, so both rows say internal (the frames written before are kept and counted);
    the next file is embedded as usual, and every input has its row."""
    rng = np.random.default_rng(3)
    paths = []
    for name, seconds in (("a", 2.5), ("b", 10.0), ("c", 1.0)):
        paths.append(tmp_path / f"{name}.wav")
        sf.write(paths[-1], (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
    out = tmp_path / "out"
    # a: 5 frames -> call 1 runs 4; its 5th waits for b's first 3 in call 2, which fails.
    frames, rows = _run_fn(_fn(out, FailingOnCallLoader(2), frames_per_batch=4), out, *paths)
    assert [(r["path"].rsplit("/", 1)[-1], r["status"], r["error_kind"]) for r in rows] == [
        ("a.wav", "error", "internal"),
        ("b.wav", "error", "internal"),
        ("c.wav", "ok", None),
    ]
    assert "interpreter crashed" in rows[0]["error"] and "interpreter crashed" in rows[1]["error"]
    assert [r["frames"] for r in rows] == [4, 0, framing.num_frames(16000)]
    assert frames.num_rows == sum(r["frames"] for r in rows)
    for row in rows:  # the rows kept are the fake model's numbers for those frames
        audio, _, _ = decode_file(row["path"])
        got = frames.filter(pc.equal(frames.column("path"), row["path"]))
        want = FakeModel().predict(framing.frame_signal(audio))[1][: row["frames"]]  # the fake's embedding: exact
        assert got.column("frame").to_pylist() == list(range(row["frames"]))
        assert np.array_equal(np.asarray(got.column("embedding").to_pylist(), np.float32).reshape(-1, 1024), want)


def test_real_model_equals_direct_interpreter(fixtures_dir, model_path, tmp_path):
    """Pipeline numbers equal a plain LiteRT call on the same 16 kHz frames (embedding exposed by rewrite)."""
    from ai_edge_litert.interpreter import Interpreter

    path = fixtures_dir / "speech_16k_float32.wav"
    table, _ = _run_fn(_fn(tmp_path, ModelLoader(str(model_path)), frames_per_batch=5), tmp_path, path)
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
    np.testing.assert_array_equal(got, np.stack(expected))  # bit for bit, batched in --frames_per_batch 5
    assert table.column("top_label").to_pylist() == [LABELS[i] for i in np.stack(expected).argmax(axis=1)]


def test_workers_run_the_inference_path_the_launcher_recorded(model_path, tmp_path):
    """The launcher records "batched"/"per_frame"; a worker follows it, and refuses a path it cannot run."""
    from tests.support import tflite_builder
    from yamnet_beam.model import ModelError

    assert ModelLoader(str(model_path), inference="batched").load().inference() == "batched"
    assert ModelLoader(str(model_path), inference="per_frame").load().inference() == "per_frame"
    tiny = tmp_path / "tiny.tflite"
    tiny.write_bytes(tflite_builder.fixed_model())  # no front end/CNN structure: per frame only
    assert ModelLoader(str(tiny)).load().inference() == "per_frame"
    with pytest.raises(ModelError, match="the launcher runs it batched, but this worker .* cannot build"):
        ModelLoader(str(tiny), inference="batched").load()


def test_files_opened_ahead_leave_no_thread_behind(fixtures_dir, tmp_path, no_leaked_threads):
    """The next file is opened while the current one runs through the model; nothing outlives the part."""
    names = ["speech_22k_mono.wav", "bad_empty.wav", "tone_1khz_16k.wav", "speech_48k_stereo.flac"]
    _, rows = _run_fn(_fn(tmp_path), tmp_path, *(fixtures_dir / n for n in names))
    assert [r["status"] for r in rows] == ["ok", "error", "ok", "ok"]


def test_a_failing_part_closes_the_file_opened_ahead(fixtures_dir, tmp_path, no_leaked_threads):
    fn = _fn(tmp_path, FailingModelLoader(KeyboardInterrupt()))
    part = Part("p", tuple(InputFile(str(fixtures_dir / n)) for n in ["tone_1khz_16k.wav", "speech_22k_mono.wav"]))
    with pytest.raises(KeyboardInterrupt):
        list(fn.process(part))


@pytest.mark.parametrize(
    "name,limits,split",
    [
        ("speech_16k_float32.wav", {}, True),
        ("speech_16k.flac", {}, True),  # written below from the WAV
        ("speech_44k.m4a", {}, False),  # PyAV: no sample-exact seek
        ("speech_44k_stereo.mp3", {}, False),  # lossy, through libsndfile: seeks are not bit-exact either
        ("speech_16k_float32.wav", {"max_duration_s": 60.0}, False),  # a limit counts from the file's start
        ("speech_48k_stereo.flac", {}, False),  # 48 kHz segments start on a 12 s grid: one would be the whole file
    ],
)
def test_only_exactly_seekable_files_without_a_limit_are_split(fixtures_dir, tmp_path, name, limits, split):
    path = fixtures_dir / name
    if name == "speech_16k.flac":
        path = tmp_path / name
        sf.write(path, sf.read(fixtures_dir / "speech_16k_float32.wav")[0], 16000, subtype="PCM_16")
    fn = _fn(tmp_path, shard_seconds=2.0, **limits)  # the 6-10 s fixtures are "long" at 2 s shards
    out = list(fn.process(Part("p1", (InputFile(str(path)),))))
    segments = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    rows = [o for o in out if not isinstance(o, beam.pvalue.TaggedOutput)]
    assert (len(segments) > 0, len(rows)) == (split, 0 if split else 1)
    if split:
        assert segments[0].start == 0 and segments[-1].stop is None and len(segments) == segments[0].count >= 3
    else:
        assert rows[0]["status"] == "ok" and rows[0]["frames"] == framing.num_frames(len(decode_file(str(path))[0]))
