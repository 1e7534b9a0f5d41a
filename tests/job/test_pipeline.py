"""Whole pipelines on the DirectRunner: every input once in files/, frames per the formula, real model numbers."""

import hashlib
import json
import math
import shutil
import warnings

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline as beam_test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.support import reference
from tests.support.fakes import FakeModelLoader
from tests.support.fixtures import BAD
from yamnet_beam.audio import decode_file
from yamnet_beam.job.checks import plan_run
from yamnet_beam.job.options import OptionsError, YamnetOptions
from yamnet_beam.job.pipeline import build_pipeline, run
from yamnet_beam.table import schema

SPEECH = [
    "speech_16k_float32.wav",
    "speech_22k_mono.wav",
    "speech_44k.m4a",
    "speech_44k_stereo.mp3",
    "speech_48k.opus",
    "speech_48k_stereo.flac",
    "speech_8k_u8.wav",
    "speech_96k_24bit.wav",
]


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory, fixtures_dir):
    """A copy of every fixture, plus a name with spaces and unicode, so paths in the tables are ours."""
    d = tmp_path_factory.mktemp("audio")
    for f in fixtures_dir.iterdir():
        shutil.copy(f, d / f.name)
    shutil.copy(fixtures_dir / "tone_1khz_16k.wav", d / "tône with space.wav")
    return d


def _argv(audio_dir, out, model_path, class_map_path, *extra):
    model = ["--model", str(model_path), "--class_map", str(class_map_path)]
    return ["--input", str(audio_dir), "--output", str(out), *model, *extra]


def _expected_frames(path) -> int:
    """From soundfile/PyAV + soxr and the formula (tests/support/reference.py), not the package's own decoder."""
    return reference.num_frames(len(reference.decode_16k(path)))


@pytest.fixture(scope="module")
def inprocess_run(audio_dir, tmp_path_factory, model_path, class_map_path):
    out = tmp_path_factory.mktemp("out") / "run"
    summary = run(_argv(audio_dir, out, model_path, class_map_path, "--frames_per_batch", "16"))
    return out, summary


def test_every_input_once_with_status(inprocess_run, audio_dir):
    out, summary = inprocess_run
    files = pq.read_table(out / "files").to_pylist()
    paths = sorted(r["path"] for r in files)
    assert paths == sorted(str(p) for p in audio_dir.iterdir())
    by_name = {r["path"].rsplit("/", 1)[1]: r for r in files}
    for name, (kind, reason) in BAD.items():
        row = by_name[name]
        assert row["status"] == "error" and row["error_kind"] == kind, row
        assert reason in row["error"], row
    ok = [r for r in files if r["status"] == "ok"]
    assert len(ok) == len(files) - len(BAD)
    assert summary.files_ok == len(ok) and summary.files_error == len(BAD)
    assert summary.files_matched == summary.files_ok + summary.files_error


def test_frame_rows_follow_formula(inprocess_run, audio_dir):
    out, summary = inprocess_run
    frames = pq.read_table(out / "frames", columns=["path", "frame", "start_s", "valid_samples"])
    files = {r["path"]: r for r in pq.read_table(out / "files").to_pylist()}
    counts = {}
    for path, frame in zip(frames.column("path").to_pylist(), frames.column("frame").to_pylist(), strict=True):
        counts.setdefault(path, []).append(frame)
    for path, row in files.items():
        if row["status"] != "ok":
            continue
        expected = _expected_frames(path)
        assert sorted(counts[path]) == list(range(expected)), path  # none lost, none duplicated
        assert row["frames"] == expected
    assert summary.frames == frames.num_rows


def test_parquet_schema_metadata_and_side_files(inprocess_run, model_path):
    out, _ = inprocess_run
    sha256 = hashlib.sha256(model_path.read_bytes()).hexdigest()
    frame_parts, file_parts = list((out / "frames").glob("*.parquet")), list((out / "files").glob("*.parquet"))
    assert frame_parts and file_parts
    for part in frame_parts:
        f = pq.ParquetFile(part)
        assert f.schema_arrow.remove_metadata() == schema.frames_schema()
        meta = schema.read_metadata(f.schema_arrow)
        assert meta["model_sha256"] == sha256
        assert meta["hop_samples"] == 7680
        assert f.metadata.row_group(0).column(0).compression == "ZSTD"
    for part in file_parts:
        assert pq.read_schema(part).remove_metadata() == schema.FILES_SCHEMA
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_sha256"] == sha256
    assert manifest["counts"]["files_matched"] == manifest["counts"]["files_ok"] + manifest["counts"]["files_error"]
    labels = (out / "labels.csv").read_text().splitlines()
    assert labels[0] == "index,mid,display_name" and len(labels) == 522 and labels[1].endswith("Speech")


@pytest.mark.parametrize("name", SPEECH)
def test_speech_is_speech(inprocess_run, audio_dir, name):
    out, _ = inprocess_run
    t = pq.read_table(out / "frames", filters=[("path", "=", str(audio_dir / name))], columns=["scores"])
    mean = t.column("scores").combine_chunks().flatten().to_numpy().reshape(-1, 521).mean(axis=0)
    assert mean.argmax() == 0  # index 0 of the AudioSet class map is "Speech"


def test_multiprocessing_equals_inprocess(inprocess_run, audio_dir, tmp_path, model_path, class_map_path):
    ref_out, _ = inprocess_run
    out = tmp_path / "mp"
    run(
        _argv(
            audio_dir,
            out,
            model_path,
            class_map_path,
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        )
    )
    cols = ["path", "frame", "start_s", "scores", "embedding", "top_label"]
    a = pq.read_table(ref_out / "frames", columns=cols).sort_by([("path", "ascending"), ("frame", "ascending")])
    b = pq.read_table(out / "frames", columns=cols).sort_by([("path", "ascending"), ("frame", "ascending")])
    assert a.num_rows == b.num_rows
    assert a.column("path").to_pylist() == b.column("path").to_pylist()
    # outputs are bit-identical across processes (NOTES: LiteRT/XNNPACK is deterministic per thread count)
    for c in ("scores", "embedding"):
        np.testing.assert_array_equal(
            a.column(c).combine_chunks().flatten().to_numpy(), b.column(c).combine_chunks().flatten().to_numpy()
        )
    fa = pq.read_table(ref_out / "files").sort_by("path").to_pylist()
    fb = pq.read_table(out / "files").sort_by("path").to_pylist()
    assert fa == fb


def test_testpipeline_with_fake_model(audio_dir, tmp_path, model_path, class_map_path):
    """TestPipeline + assert_that on the PCollections, through the fake-model seam."""
    opts = PipelineOptions(
        _argv(audio_dir, tmp_path / "o", model_path, class_map_path, "--embedding_dtype", "float16")
    ).view_as(YamnetOptions)
    plan = plan_run(opts)
    with beam_test_pipeline.TestPipeline() as p:
        rows = build_pipeline(p, plan, opts, model_loader=FakeModelLoader())
        statuses = rows | beam.Map(lambda r: (r["path"].rsplit("/", 1)[1], r["status"]))
        expected = [(f.name, "error" if f.name.startswith("bad_") else "ok") for f in audio_dir.iterdir()]
        assert_that(statuses, equal_to(expected))
        total = sum(_expected_frames(f) for f in audio_dir.iterdir() if not f.name.startswith("bad_"))
        frames = rows | beam.Map(lambda r: r["frames"] if r["status"] == "ok" else 0) | beam.CombineGlobally(sum)
        assert_that(frames, equal_to([total]), label="FrameRows")
    ok_rows = pq.read_table(tmp_path / "o" / "frames").num_rows
    assert ok_rows == total
    emb = pq.read_schema(next((tmp_path / "o" / "frames").glob("*.parquet"))).field("embedding").type
    assert str(emb.value_type) == "halffloat"


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--hop_s", "0"], "hop"),
        (["--hop_s", "1.5"], "hop"),
        (["--model", "/nonexistent/yamnet.tflite"], "yamnet.tflite"),
        (["--input", "/nonexistent/*.wav"], "/nonexistent/"),
    ],
)
def test_bad_options_fail_before_work(audio_dir, tmp_path, model_path, class_map_path, extra, match):
    with pytest.raises(ValueError, match=match):
        run(_argv(audio_dir, tmp_path / "o", model_path, class_map_path) + extra)
    assert not (tmp_path / "o" / "frames").exists()


def test_existing_output_is_refused_then_overwritten(inprocess_run, audio_dir, tmp_path, model_path, class_map_path):
    out = tmp_path / "again"
    (out / "files").mkdir(parents=True)
    (out / "files" / "stale.parquet").write_bytes(b"old")
    with pytest.raises(OptionsError, match="--mode overwrite"):
        run(_argv(fixtures := audio_dir / "tone_1khz_16k.wav", out, model_path, class_map_path))
    summary = run(_argv(fixtures, out, model_path, class_map_path, "--mode", "overwrite"))
    assert not (out / "files" / "stale.parquet").exists()
    assert summary.files_ok == 1 and summary.frames == math.ceil((64000 - 15600) / 7680) + 1


def test_readme_queries_run_on_real_output(inprocess_run):
    """Every SQL statement in the README's "Query it" section runs on a real output and finds rows."""
    import re
    from pathlib import Path

    import duckdb

    out, _ = inprocess_run
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", readme, flags=re.S)
    statements = [s.strip() for b in blocks for s in b.split(";") if s.strip()]
    assert len(statements) >= 3
    for sql in statements:
        rows = duckdb.sql(sql.replace("'out/", f"'{out}/")).fetchall()
        assert rows, sql
        assert rows == _readme_expected(sql, out, rows), sql


def _readme_expected(sql: str, out, got: list[tuple]) -> list[tuple]:
    """Each README query's answer computed with pyarrow/numpy from the Parquet parts (an unknown query fails).

    Rows tied on every ORDER BY key may come in any order, so ``got`` supplies the order within ties only.
    """
    from collections import Counter

    frames = pq.read_table(out / "frames", columns=["path", "start_s", "end_s", "top_label", "scores"]).to_pylist()
    if "count(*)" in sql and "top_label" in sql:
        counts = Counter((f["path"], f["top_label"]) for f in frames)
        rows = [(p, label, n) for (p, label), n in counts.items()]
        keys = [(p, -n) for p, _, n in got]
        assert keys == sorted(keys) and Counter(got) == Counter(rows)
        return got
    if "count(*) * 0.48" in sql and "scores[1] > 0.5" in sql:
        speech = Counter(f["path"] for f in frames if f["scores"][0] > 0.5)
        rows = {p: n * 0.48 for p, n in speech.items() if n * 0.48 >= 2}
        assert {p: float(sec) for p, sec in got} == pytest.approx(rows) and rows
        assert [float(sec) for _, sec in got] == sorted((float(sec) for _, sec in got), reverse=True)
        return got
    if "scores[1] > 0.5" in sql:  # DuckDB lists are 1-based: class 0, Speech
        rows = [(f["path"], f["start_s"], f["end_s"], f["scores"][0]) for f in frames if f["scores"][0] > 0.5]
        return sorted(rows, key=lambda r: (r[0], r[1]))
    if "status = 'error'" in sql:
        files = pq.read_table(out / "files", columns=["path", "status", "error_kind", "error"]).to_pylist()
        rows = [(f["path"], f["error_kind"], f["error"]) for f in files if f["status"] == "error"]
        assert Counter(got) == Counter(rows) and len(rows) == len(BAD)
        return got
    if "s.status = 'ok'" in sql:
        files = pq.read_table(out / "files", columns=["path", "status"]).to_pylist()
        ok = {f["path"] for f in files if f["status"] == "ok"}
        assert len(got) == sum(f["path"] in ok for f in frames)
        assert sorted({r[0] for r in got}) == sorted(ok)
        return got
    raise AssertionError(f"no independent expectation for this README query yet: {sql}")


@pytest.fixture(scope="module")
def reference_interpreter(model_path):
    """A plain LiteRT interpreter on the unmodified model; preserve_all_tensors (debug-only, never used by the
    package) lets it read the embedding tensor directly, independently of our flatbuffer rewrite."""
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "for debugging purposes only": that is what this is
        interp = Interpreter(model_path=str(model_path), num_threads=1, experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    names = {d["name"]: d["index"] for d in interp.get_tensor_details()}
    emb = names["yamnet_frames/global_average_pooling2d/Mean"]
    inp = interp.get_input_details()[0]["index"]
    out = next(d["index"] for d in interp.get_output_details() if tuple(d["shape"]) == (1, 521))

    def call(frames):
        scores, embs = [], []
        for frame in frames:
            interp.set_tensor(inp, frame[None, :])
            interp.invoke()
            scores.append(interp.get_tensor(out).reshape(-1).copy())
            embs.append(interp.get_tensor(emb).reshape(-1).copy())
        return np.stack(scores), np.stack(embs)

    return call


@pytest.mark.parametrize(
    "name",
    sorted(
        set(SPEECH)
        | {
            "tone_1khz_16k.wav",
            "tone_48k_6ch.wav",
            "noise_44k_stereo.ogg",
            "sweep_22k.flac",
            "short_0.3s_16k.wav",
            "exact_one_frame_16k.wav",
            "silence_10s_16k.wav",
        }
    ),
)
def test_pipeline_equals_direct_interpreter(inprocess_run, audio_dir, reference_interpreter, name):
    out, _ = inprocess_run
    path = audio_dir / name
    t = pq.read_table(out / "frames", filters=[("path", "=", str(path))]).sort_by("frame")
    audio, _, _ = decode_file(str(path))
    ref_scores, ref_emb = reference_interpreter(reference.frames(audio))  # the package's samples: bit for bit
    scores = t.column("scores").combine_chunks().flatten().to_numpy().reshape(-1, 521)
    emb = t.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, 1024)
    np.testing.assert_array_equal(scores, ref_scores)  # bit for bit: the batched path changes nothing
    np.testing.assert_array_equal(emb, ref_emb)


def test_run_records_the_batched_path(inprocess_run):
    """The real model runs batched; manifest.json and every table's key-value metadata say so."""
    out, _ = inprocess_run
    assert json.loads((out / "manifest.json").read_text())["inference"] == "batched"
    for table in ("frames", "files"):
        f = next((out / table).glob("*.parquet"))
        assert schema.read_metadata(pq.read_schema(f))["inference"] == "batched"


def test_the_inference_path_leaves_the_fingerprint_alone(tmp_path, fixtures_dir, model_path, class_map_path):
    """Batched or per frame, the numbers are the same: resume must treat either output as done."""
    plans = {
        mode: plan_run(
            PipelineOptions(
                _argv(
                    fixtures_dir / "tone_1khz_16k.wav", tmp_path / mode, model_path, class_map_path, "--inference", mode
                )
            ).view_as(YamnetOptions)
        )
        for mode in ("auto", "per_frame")
    }
    assert plans["auto"].metadata["inference"] == "batched" and plans["per_frame"].metadata["inference"] == "per_frame"
    assert plans["auto"].settings.fingerprint == plans["per_frame"].settings.fingerprint
    assert plans["auto"].metadata["fingerprint"] == plans["per_frame"].metadata["fingerprint"]


@pytest.mark.parametrize(
    "hop_seconds,extra,path",
    [(0.25, [], "batched"), (0.4801, [], "per_frame"), (0.48, ["--inference", "per_frame"], "per_frame")],
)
def test_other_hops_equal_the_direct_interpreter(
    tmp_path, fixtures_dir, model_path, class_map_path, reference_interpreter, hop_seconds, extra, path
):
    """0.25 s = 25 STFT rows: batched; 7682 samples share no rows with the next frame: per-frame invoke;
    --inference per_frame forces it. The same numbers every way."""
    src = fixtures_dir / "speech_48k_stereo.flac"
    run(["--input", str(src), "--output", str(tmp_path), "--model", str(model_path), "--class_map", str(class_map_path),
         "--hop_s", str(hop_seconds), *extra])  # fmt: skip
    t = pq.read_table(tmp_path / "frames").sort_by("frame")
    audio, _, _ = decode_file(str(src))
    ref_scores, ref_emb = reference_interpreter(reference.frames(audio, round(hop_seconds * 16000)))
    np.testing.assert_array_equal(t.column("scores").combine_chunks().flatten().to_numpy().reshape(-1, 521), ref_scores)
    np.testing.assert_array_equal(
        t.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, 1024), ref_emb
    )
    assert json.loads((tmp_path / "manifest.json").read_text())["inference"] == path


def test_variable_length_model_through_the_pipeline(tmp_path, fixtures_dir, class_map_path):
    """The [-1]-input export, built by the tests, runs end to end with the same framing."""
    from tests.support import tflite_builder

    model = tmp_path / "variable.tflite"
    model.write_bytes(tflite_builder.variable_model())
    path = fixtures_dir / "speech_22k_mono.wav"
    run(
        [
            "--input",
            str(path),
            "--output",
            str(tmp_path / "o"),
            "--model",
            str(model),
            "--class_map",
            str(class_map_path),
        ]
    )
    t = pq.read_table(tmp_path / "o" / "frames").sort_by("frame")
    audio, _, _ = decode_file(str(path))
    frames = reference.frames(audio)
    scores = t.column("scores").combine_chunks().flatten().to_numpy().reshape(-1, 521)
    emb = t.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, 1024)
    np.testing.assert_allclose(scores, tflite_builder.expected_scores(frames), atol=1e-5)
    np.testing.assert_array_equal(emb, frames[:, :1024])
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["model_kind"] == "variable"
    assert manifest["inference"] == "per_frame"  # a graph without the known front end/CNN structure


def test_progress_counts_committed_parts(tmp_path):
    """The progress line is computed from committed files/ parts, so it works on any runner."""
    import io

    from yamnet_beam.job.progress import Progress
    from yamnet_beam.table.output import OutputDir
    from yamnet_beam.table.parts import PartWriter

    def commit(pid, durations):
        rows = [
            schema.file_row(f"/{pid}{i}.wav", status="ok", duration_s=d, fingerprint="f", part=pid)
            for i, d in enumerate(durations)
        ]
        PartWriter(str(tmp_path), pid, schema.frames_schema(), schema.files_schema()).commit(rows)

    commit("old", [3600.0])  # done by an earlier run: not counted
    progress = Progress(OutputDir(str(tmp_path)), total_files=5, interval_s=0, stream=io.StringIO())
    assert progress.poll().startswith("yamnet-beam: 0/5 files done, 0.00 h audio")
    commit("a", [1800.0, 1800.0])
    commit("b", [None])  # an error row: a file done, no audio
    assert progress.poll().startswith("yamnet-beam: 3/5 files done, 1.00 h audio")
    assert progress.poll().startswith("yamnet-beam: 3/5 files done, 1.00 h audio")  # nothing counted twice


def test_counters_per_kind_and_stage(tmp_path, fixtures_dir, model_path, class_map_path):
    """Beam counters: files ok/error by kind, frames, audio, per-stage time, model load time and size."""
    from apache_beam.metrics.metric import MetricsFilter

    d = tmp_path / "in"
    d.mkdir()
    for name in ["tone_1khz_16k.wav", "speech_48k_stereo.flac", "bad_text.wav", "bad_empty.wav"]:
        shutil.copy(fixtures_dir / name, d / name)
    opts = PipelineOptions(_argv(d, tmp_path / "o", model_path, class_map_path)).view_as(YamnetOptions)
    plan = plan_run(opts)
    p = beam_test_pipeline.TestPipeline()
    build_pipeline(p, plan, opts)
    result = p.run()
    result.wait_until_finish()
    metrics = result.metrics().query(MetricsFilter().with_namespace("yamnet_beam"))
    counters = {m.key.metric.name: m.committed for m in metrics["counters"]}
    dists = {m.key.metric.name: m.committed for m in metrics["distributions"]}
    assert counters["files_ok"] == 2 and counters["files_error"] == 2
    assert counters["files_error_unsupported_format"] == 1 and counters["files_error_empty_file"] == 1
    expected = sum(_expected_frames(d / n) for n in ["tone_1khz_16k.wav", "speech_48k_stereo.flac"])
    assert counters["frames"] == expected
    # each file's duration in whole ms, from the file headers as libsndfile reads them (4 s tone + ~10 s speech)
    audio_ms = sum(int(sf.info(str(d / n)).duration * 1000) for n in ["tone_1khz_16k.wav", "speech_48k_stereo.flac"])
    assert counters["audio_ms"] == pytest.approx(audio_ms, abs=2)
    assert counters["infer_ms"] > 0 and "decode_ms" in counters and "write_ms" in counters
    assert dists["model_bytes"].max == model_path.stat().st_size and dists["model_load_ms"].count >= 1


def test_http_inputs_give_the_frames_of_local_copies(
    inprocess_run, audio_dir, fixtures_dir, model_args, http_server, tmp_path
):
    """http(s):// inputs, given as a URL and inside a manifest of URLs, read through fsspec like local files."""
    names = ["tone_1khz_16k.wav", "speech_48k_stereo.flac"]
    www = tmp_path / "www"
    www.mkdir()
    for n in names:
        shutil.copy(fixtures_dir / n, www / n)
    server = http_server(www)
    (www / "more.txt").write_text(f"# a manifest of URLs\n{server.url(names[1])}\n")
    out = tmp_path / "o"
    summary = run(
        ["--input", server.url(names[0]), "--input", server.url("more.txt"), "--output", str(out), *model_args]
    )
    assert summary.files_ok == 2 and summary.files_error == 0
    assert sorted(pq.read_table(out / "files")["path"].to_pylist()) == sorted(server.url(n) for n in names)

    def frames(d, paths):
        t = pq.read_table(d / "frames", columns=["path", "frame", "scores", "embedding"]).to_pylist()
        return {
            (r["path"].rsplit("/", 1)[1], r["frame"]): (r["scores"], r["embedding"]) for r in t if r["path"] in paths
        }

    got = frames(out, {server.url(n) for n in names})
    local = frames(inprocess_run[0], {str(audio_dir / n) for n in names})  # the same files, run from disk
    assert len(got) == sum(_expected_frames(fixtures_dir / n) for n in names)
    assert got == local
