"""Integrity end to end: every input accounted for with its exact error kind, bad options refused
before any work, resume after a SIGKILL equal to an uninterrupted run, deterministic tables."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from fsspec.implementations.memory import MemoryFileSystem

from tests.support import tflite_builder
from tests.support.fixtures import BAD
from yamnet_beam import framing
from yamnet_beam.audio import decode_file
from yamnet_beam.cli import main
from yamnet_beam.job.pipeline import RunFailedError, run
from yamnet_beam.table.lease import Lease
from yamnet_beam.table.output import OutputDir
from yamnet_beam.uris import display_path

SR = 16000


def _tone(seconds, sr=SR, channels=1, freq=440.0):
    t = np.arange(int(seconds * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


class HangingFS(MemoryFileSystem):
    """A filesystem whose reads block until released: a stalled network mount or a hung decoder."""

    protocol = "hang"
    release = threading.Event()

    @classmethod
    def _strip_protocol(cls, path):
        return MemoryFileSystem._strip_protocol(path.removeprefix("hang://"))

    def _open(self, path, mode="rb", **kwargs):
        f = super()._open(path, mode, **kwargs)
        if "r" in mode:
            for name in ("read", "readinto"):
                original = getattr(f, name)

                def blocked(*args, _original=original):
                    HangingFS.release.wait(60)
                    return _original(*args)

                setattr(f, name, blocked)
        return f


@pytest.fixture
def hanging_file():
    fsspec.register_implementation("hang", HangingFS, clobber=True)
    fs = HangingFS()
    buf = __import__("io").BytesIO()
    sf.write(buf, _tone(2), SR, format="WAV")
    fs.pipe("/stuck/slow.wav", buf.getvalue())
    HangingFS.release.clear()
    yield "hang:///stuck/slow.wav"
    HangingFS.release.set()  # no thread stays blocked after the test
    fs.rm("/stuck", recursive=True)


def _write_cases(d, fixtures_dir):
    """Every bad case of issue 3 next to good files; returns {file name: expected kind or 'ok'}."""
    expected = {}
    for f in fixtures_dir.iterdir():
        shutil.copy(f, d / f.name)
        expected[f.name] = BAD[f.name][0] if f.name in BAD else "ok"
    sf.write(d / "zero_length.wav", np.zeros(0, np.float32), SR)
    expected["zero_length.wav"] = "no_audio"
    nan = _tone(2)
    nan[[5, 500, 5000]] = [np.nan, np.inf, -np.inf]
    sf.write(d / "nan_inf.wav", nan, SR, subtype="FLOAT")
    expected["nan_inf.wav"] = "ok"
    sf.write(d / "rate_1k.wav", _tone(3, sr=1000, freq=100), 1000)
    sf.write(d / "rate_384k.wav", _tone(1.2, sr=384000), 384000)
    sf.write(d / "channels_32.wav", _tone(1.5, channels=32), SR)
    sf.write(d / "long_20s.wav", _tone(20), SR)  # longer than --max_duration_s below
    expected.update({"rate_1k.wav": "ok", "rate_384k.wav": "ok", "channels_32.wav": "ok", "long_20s.wav": "too_long"})
    shutil.copy(fixtures_dir / "tone_1khz_16k.wav", d / "spaces and ünïcödé ♫.wav")
    expected["spaces and ünïcödé ♫.wav"] = "ok"
    with open(os.path.join(os.fsencode(d), b"caf\xe9-latin1.wav"), "wb") as f:  # not UTF-8: a real Linux name
        f.write((fixtures_dir / "tone_1khz_16k.wav").read_bytes())
    expected["caf\\xe9-latin1.wav"] = "ok"  # shown with the byte escaped, the table stays valid UTF-8
    return expected


def _rows(out):
    """The files/ rows by file name."""
    return {r["path"].rsplit("/", 1)[1]: r for r in pq.read_table(out / "files").to_pylist()}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, fixtures_dir, model_args):
    d = tmp_path_factory.mktemp("cases")
    expected = _write_cases(d, fixtures_dir)
    out = tmp_path_factory.mktemp("out") / "run"
    argv = [
        "--input",
        str(d),
        "--output",
        str(out),
        *model_args,
        "--max_duration_s",
        "12",
        "--part_files",
        "4",
    ]
    summary = run(argv)
    return out, summary, expected, d


def test_every_case_has_its_exact_kind(bad_run):
    out, summary, expected, _ = bad_run
    rows = _rows(out)
    assert sorted(rows) == sorted(expected)  # every input exactly once
    for name, kind in expected.items():
        row = rows[name]
        if kind == "ok":
            assert row["status"] == "ok" and row["error"] is None, row
        else:
            assert row["status"] == "error" and row["error_kind"] == kind, row
            assert row["error"] and len(row["error"]) > 10
    assert summary.files_matched == summary.files_ok + summary.files_error == len(expected)
    assert summary.errors_by_kind == {
        k: sum(1 for v in expected.values() if v == k) for k in set(expected.values()) - {"ok"}
    }


def test_summary_file_equals_a_count_of_the_files_rows(bad_run):
    """The job's own tally (_runs/<run_id>/summary.json) against pyarrow's reading of files/, kind by kind."""
    from collections import Counter

    out, summary, _, _ = bad_run
    [summary_file] = (out / "_runs").glob("*/summary.json")
    tally = json.loads(summary_file.read_text())
    rows = pq.read_table(out / "files").to_pylist()
    assert tally["rows"] == tally["files_todo"] == len(rows)
    assert tally["ok"] == sum(r["status"] == "ok" for r in rows)
    assert tally["error"] == sum(r["status"] == "error" for r in rows)
    kinds = Counter(r["error_kind"] for r in rows if r["status"] == "error")
    assert {k.split(":", 1)[1]: v for k, v in tally.items() if k.startswith("error_kind:")} == dict(kinds)
    assert tally["frames"] == sum(r["frames"] for r in rows) == summary.frames
    assert tally["duration_s"] == pytest.approx(sum(r["duration_s"] or 0 for r in rows))
    assert tally["parts"] == len(list((out / "files").iterdir()))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["parts_this_run"] == tally["parts"]
    assert manifest["counts"]["errors_by_kind"] == dict(kinds)


def test_listed_then_vanished_and_missing_manifest_entries_get_io_error_rows(
    tmp_path, fixtures_dir, monkeypatch, model_args
):
    """A file deleted after the workers listed it (with its size) and a manifest entry that never existed:
    each gets exactly one io_error row; the summary counts them."""
    from yamnet_beam.job import form_parts

    d = tmp_path / "audio"
    d.mkdir()
    for name in ["stays.wav", "vanishes.wav"]:
        shutil.copy(fixtures_dir / "tone_1khz_16k.wav", d / name)
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"{d / 'stays.wav'}\n{tmp_path / 'never-there.wav'}\n")
    real_cut = form_parts.cut_bucket

    def cut_then_delete(items, *args, **kwargs):  # runs after listing, before any decoding
        items = list(items)
        listed = {f.path: f for _, f in items}
        if str(d / "vanishes.wav") in listed:
            assert listed[str(d / "vanishes.wav")].size_bytes > 0  # it was listed with its identity
            (d / "vanishes.wav").unlink(missing_ok=True)
        return real_cut(items, *args, **kwargs)

    monkeypatch.setattr(form_parts, "cut_bucket", cut_then_delete)
    out = tmp_path / "out"
    s = run(["--input", str(d), "--input", str(manifest), "--output", str(out), *model_args])
    rows = pq.read_table(out / "files").to_pylist()
    by_name = {r["path"].rsplit("/", 1)[1]: r for r in rows}
    assert len(rows) == len(by_name) == 3  # stays.wav named twice: one row
    assert by_name["stays.wav"]["status"] == "ok"
    for name in ["vanishes.wav", "never-there.wav"]:
        assert (by_name[name]["status"], by_name[name]["error_kind"]) == ("error", "io_error"), by_name[name]
        assert "no such file" in by_name[name]["error"]
    assert (s.files_matched, s.files_ok, s.errors_by_kind) == (3, 1, {"io_error": 2})


def test_good_files_complete_and_flags(bad_run):
    out, _, expected, cases = bad_run
    rows = _rows(out)
    # decoded lengths, independent of the rows' own durations (names as the table shows them)
    shown = {display_path(str(p)).rsplit("/", 1)[1]: p for p in cases.iterdir()}
    lengths = {name: len(decode_file(str(shown[name]))[0]) for name, kind in expected.items() if kind == "ok"}
    frames = pq.read_table(out / "frames", columns=["path", "frame", "valid_samples"]).to_pylist()
    per_file = {}
    for f in frames:
        per_file.setdefault(f["path"].rsplit("/", 1)[1], []).append(f["frame"])
    for name, kind in expected.items():
        if kind == "ok":
            expected_frames = list(range(framing.num_frames(lengths[name])))
            assert sorted(per_file[name]) == expected_frames == list(range(rows[name]["frames"]))
    assert rows["short_0.3s_16k.wav"]["warning"].startswith("shorter than one window")
    assert rows["nan_inf.wav"]["nonfinite_samples"] == 3 and "NaN/Inf" in rows["nan_inf.wav"]["warning"]
    assert rows["channels_32.wav"]["channels"] == 32 and rows["rate_384k.wav"]["sample_rate"] == 384000
    # too long: the first 12 s are kept (and counted), the row says why
    assert sorted(per_file["long_20s.wav"]) == list(range(framing.num_frames(12 * SR)))
    assert rows["long_20s.wav"]["frames"] == framing.num_frames(12 * SR)
    assert "max_duration_s" in rows["long_20s.wav"]["error"]


def test_deleted_permission_denied_and_hung_files(tmp_path, fixtures_dir, hanging_file, monkeypatch, model_args):
    """Files that vanish after matching, cannot be opened, or hang become rows; the good file completes."""
    from yamnet_beam.audio import decoders

    for name in ["vanishing.wav", "locked.wav", "good.wav"]:
        shutil.copy(fixtures_dir / "tone_1khz_16k.wav", tmp_path / name)
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"vanishing.wav\nlocked.wav\ngood.wav\n{hanging_file}\n")
    real_open = decoders._open_file

    def guarded_open(uri, *args, **kwargs):
        if str(uri).endswith("vanishing.wav"):  # gone between matching and reading
            (tmp_path / "vanishing.wav").unlink(missing_ok=True)
        if str(uri).endswith("locked.wav"):  # tests run as root, so chmod cannot deny: refuse at the boundary
            raise PermissionError(13, "Permission denied", str(uri))
        return real_open(uri, *args, **kwargs)

    monkeypatch.setattr(decoders, "_open_file", guarded_open)
    out = tmp_path / "out"
    t0 = time.monotonic()
    run(
        [
            "--input",
            str(manifest),
            "--output",
            str(out),
            *model_args,
            "--decode_timeout_s",
            "2",
        ]
    )
    assert time.monotonic() - t0 < 60
    rows = _rows(out)
    assert rows["vanishing.wav"]["error_kind"] == "io_error"
    assert rows["locked.wav"]["error_kind"] == "io_error" and "ermission denied" in rows["locked.wav"]["error"]
    assert rows["slow.wav"]["error_kind"] == "timeout"
    assert rows["good.wav"]["status"] == "ok" and rows["good.wav"]["frames"] == framing.num_frames(64000)


# --- bad options: refused with one readable line and exit code 2, before any work (the CLI's user errors) ---


@pytest.fixture(scope="module")
def wrong_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    (d / "not_tflite.tflite").write_text("hello")
    (d / "wrong_classes.tflite").write_bytes(tflite_builder.fixed_model(classes=10))
    (d / "short_map.csv").write_text("index,mid,display_name\n0,/m/x,Speech\n1,/m/y,Music\n")
    return d


@pytest.mark.parametrize(
    "change,message",
    [
        ({"--input": None}, "No --input"),
        ({"--input": "/nowhere/**/*.wav"}, "/nowhere/"),
        ({"--output": "FILE"}, "is a file"),
        ({"--output": "/proc/version/out"}, "not writable"),
        ({"--output": "EXISTING"}, "already holds results"),
        ({"--model": "/no/such/model.tflite"}, "yamnet-beam download"),
        ({"--model": "/nope.tflite"}, "/nope.tflite"),
        ({"--model": "MODELS/not_tflite.tflite"}, "not_tflite.tflite"),
        ({"--model": "MODELS/wrong_classes.tflite"}, "521"),
        ({"--class_map": "MODELS/short_map.csv"}, "521"),
        ({"--hop_s": "0"}, "hop"),
        ({"--hop_s": "-1"}, "hop"),
        ({"--hop_s": "2"}, "hop"),
        ({"--fail_threshold": "1.5"}, "fail_threshold"),
        ({"--part_files": "0"}, "part_files"),
        ({"--decode_timeout_s": "-1"}, "decode_timeout_s"),
        ({"--embedding_dtype": "int4"}, "embedding_dtype"),
        ({"--shard_s": "nan"}, "shard_s"),
    ],
)
def test_bad_options_exit_2_before_work(
    change, message, tmp_path, fixtures_dir, model_path, class_map_path, wrong_models, capsys
):
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "EXISTING" / "files").mkdir(parents=True)
    (tmp_path / "EXISTING" / "files" / "part-x.parquet").write_bytes(b"x")
    args = {
        "--input": str(fixtures_dir / "tone_1khz_16k.wav"),
        "--output": str(tmp_path / "out"),
        "--model": str(model_path),
        "--class_map": str(class_map_path),
    }
    for k, v in change.items():
        if v is None:
            del args[k]
        else:
            args[k] = (
                v.replace("MODELS", str(wrong_models))
                .replace("FILE", str(tmp_path / "FILE"))
                .replace("EXISTING", str(tmp_path / "EXISTING"))
            )
    argv = ["run"] + [x for kv in args.items() for x in kv]
    by_argparse = False
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own choices check (--embedding_dtype)
        code, by_argparse = e.code, True
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("usage: " if by_argparse else "yamnet-beam: error:")  # one line of ours, or argparse's
    assert not (tmp_path / "out").exists()  # nothing created, no worker started


def test_fail_threshold_fails_the_job_after_writing(tmp_path, fixtures_dir, capsys, model_args):
    for name in ["tone_1khz_16k.wav", "bad_text.wav", "bad_empty.wav"]:
        shutil.copy(fixtures_dir / name, tmp_path / name)
    argv = ["--input", str(tmp_path), *model_args]
    with pytest.raises(RunFailedError, match="2 of 3 files failed"):
        run([*argv, "--output", str(tmp_path / "o1"), "--fail_threshold", "0.5"])
    assert pq.read_table(tmp_path / "o1" / "files").num_rows == 3  # everything still written
    assert main(["run", *argv, "--output", str(tmp_path / "o2"), "--fail_threshold", "0.5"]) == 1
    assert "failed" in capsys.readouterr().err
    assert run([*argv, "--output", str(tmp_path / "o3"), "--fail_threshold", "0.7"]).files_error == 2


# --- resume --------------------------------------------------------------------------------------------------

FRAME_COLS = ["path", "frame", "start_s", "end_s", "valid_samples", "scores", "embedding", "top_label", "top_score"]
FILE_COLS = ["path", "status", "error_kind", "error", "duration_s", "frames", "size_bytes", "mtime", "fingerprint"]


def _tables(out):
    frames = pq.read_table(out / "frames", columns=FRAME_COLS).sort_by([("path", "ascending"), ("frame", "ascending")])
    files = pq.read_table(out / "files", columns=FILE_COLS).sort_by("path")
    return frames, files


def _assert_same_rows(a, b):
    fa, ia = _tables(a)
    fb, ib = _tables(b)
    assert ia.to_pylist() == ib.to_pylist()
    assert fa.num_rows == fb.num_rows
    assert fa.equals(fb)  # same rows, bit for bit, none missing or duplicated


def _corpus(d, n, seconds):
    d.mkdir()
    rng = np.random.default_rng(7)
    for i in range(n):
        x = (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32) + _tone(seconds, freq=200 + 40 * i)
        sf.write(d / f"clip_{i:02d}.wav", x, SR)
    sf.write(d / "broken.wav", np.zeros(10, np.float32), SR)
    (d / "broken.wav").write_bytes((d / "broken.wav").read_bytes()[:30])


def test_resume_skips_done_and_redoes_changed(tmp_path, model_args):
    d = tmp_path / "audio"
    _corpus(d, 4, 3)
    base = [*model_args, "--part_files", "2"]
    out = tmp_path / "out"
    run(["--input", str(d), "--output", str(out), *base])
    kept_part = next(p for p in (out / "frames").iterdir())
    kept_stat = kept_part.stat().st_mtime_ns
    # a new file, a changed file; then resume
    sf.write(d / "clip_new.wav", _tone(2, freq=900), SR)
    sf.write(d / "clip_03.wav", _tone(4, freq=300), SR)
    s = run(["--input", str(d), "--output", str(out), "--mode", "resume", *base])
    assert s.files_processed == 2  # the new one and the changed one; the unchanged corrupt file stays as it was
    assert s.audio_hours_processed * 3600 == pytest.approx(2 + 4)  # its realtime factor counts its own work only
    assert s.audio_hours * 3600 == pytest.approx(3 * 3 + 2 + 4)
    ref = tmp_path / "ref"
    run(["--input", str(d), "--output", str(ref), *base])
    _assert_same_rows(out, ref)
    changed = {p.name for p in (out / "frames").iterdir() if p.stat().st_mtime_ns != kept_stat}
    assert kept_part.name not in changed or "clip_03" in str(pq.read_table(kept_part).column("path"))
    # nothing left to do: a second resume processes nothing and changes nothing
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (out / "frames").iterdir())
    assert run(["--input", str(d), "--output", str(out), "--mode", "resume", *base]).files_processed == 0
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (out / "frames").iterdir()) == before


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, model_args):
    d = tmp_path / "audio"
    _corpus(d, 24, 60)
    base = ["--input", str(d), *model_args, "--part_files", "1"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "yamnet_beam.cli", "run", *base, "--output", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            committed = list((killed / "files").glob("part-*.parquet")) if (killed / "files").exists() else []
            if len(committed) >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed: make the corpus longer"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    committed = len(list((killed / "files").glob("part-*.parquet")))
    assert 3 <= committed < 25  # really interrupted mid-run
    held = Lease(OutputDir(str(killed)), "run").current()
    assert held is not None and held.pid == proc.pid  # the dead job's lease is still there
    s = run([*base, "--output", str(killed), "--mode", "resume"])  # takes it over: its holder is provably gone
    assert s.files_processed == 25 - committed
    ref = tmp_path / "ref"
    run([*base, "--output", str(ref)])
    _assert_same_rows(killed, ref)
    assert not (killed / "_tmp").exists() or not list((killed / "_tmp").iterdir())
    assert not (killed / "_lease.json").exists()  # given back when the run ended


def test_tables_are_deterministic_across_part_sizes(tmp_path, fixtures_dir, model_args):
    base = ["--input", str(fixtures_dir), *model_args]
    run([*base, "--output", str(tmp_path / "a"), "--part_files", "1"])
    run([*base, "--output", str(tmp_path / "b"), "--part_files", "100", "--frames_per_batch", "3"])
    _assert_same_rows(tmp_path / "a", tmp_path / "b")


def test_finished_run_leaves_no_temp_dir(tmp_path, fixtures_dir, model_args):
    run(
        [
            "--input",
            str(fixtures_dir / "tone_1khz_16k.wav"),
            "--output",
            str(tmp_path / "o"),
            *model_args,
        ]
    )
    # _runs/<run_id>/ holds the job's own plan and summary (small JSON files), not temporary data
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names == ["_runs", "files", "frames", "labels.csv", "manifest.json"]
    [run_dir] = (tmp_path / "o" / "_runs").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == ["plan.json", "summary.json"]


def test_summary_and_threshold_count_only_this_runs_inputs(tmp_path, fixtures_dir, model_args):
    """Rows an earlier run left for other inputs neither count in the summary nor fail this run."""
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir(), good.mkdir()
    for name in ["bad_text.wav", "bad_empty.wav", "bad_random.mp3"]:
        shutil.copy(fixtures_dir / name, bad / name)
    shutil.copy(fixtures_dir / "tone_1khz_16k.wav", good / "tone.wav")
    base = ["--output", str(tmp_path / "o"), *model_args]
    run(["--input", str(bad), *base])
    s = run(["--input", str(good), *base, "--mode", "resume", "--fail_threshold", "0.5"])
    assert (s.files_matched, s.files_ok, s.files_error) == (1, 1, 0)
    assert pq.read_table(tmp_path / "o" / "files").num_rows == 4  # the old rows are still there


def test_workers_refuse_a_model_that_changed(model_path, tmp_path):
    from yamnet_beam.model import ModelError
    from yamnet_beam.model.loader import ModelLoader

    assert ModelLoader(str(model_path), expected_sha256=None).load() is not None
    with pytest.raises(ModelError, match="changed since the job started"):
        ModelLoader(str(model_path), expected_sha256="0" * 64).load()


def test_relative_paths_and_class_map_beside_the_model(tmp_path, fixtures_dir, model_path, class_map_path, monkeypatch):
    """Workers may run elsewhere: local paths are made absolute; the class map beside --model wins."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(model_path, models / "yamnet.tflite")
    lines = class_map_path.read_text().splitlines()
    lines[1] = lines[1].replace("Speech", "Talking")  # a different class map, to tell which one was used
    (models / "yamnet_class_map.csv").write_text("\n".join(lines) + "\n")
    elsewhere = tmp_path / "cwd"
    (elsewhere / "models").mkdir(parents=True)
    shutil.copy(class_map_path, elsewhere / "models" / "yamnet_class_map.csv")  # would win if looked at first
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("YAMNET_BEAM_CLASS_MAP", raising=False)
    shutil.copy(fixtures_dir / "speech_22k_mono.wav", elsewhere / "speech.wav")
    run(["--input", "speech.wav", "--output", "out", "--model", "../models/yamnet.tflite"])
    manifest = json.loads((elsewhere / "out" / "manifest.json").read_text())
    assert manifest["model_uri"] == str(models / "yamnet.tflite")
    assert manifest["labels_source"] == str(models / "yamnet_class_map.csv")
    assert "Talking" in pq.read_table(elsewhere / "out" / "frames", columns=["top_label"])["top_label"].to_pylist()


def test_overwrite_removes_derived_tables(tmp_path, fixtures_dir, model_args):
    base = [
        "--input",
        str(fixtures_dir / "tone_1khz_16k.wav"),
        "--output",
        str(tmp_path / "o"),
        *model_args,
    ]
    run(base)
    for derived in ["clips", "_similar_cache", "heads/old_head"]:
        (tmp_path / "o" / derived).mkdir(parents=True)
        (tmp_path / "o" / derived / "stale").write_text("old")
    run([*base, "--mode", "overwrite"])
    for derived in ["clips", "_similar_cache", "heads"]:
        assert not (tmp_path / "o" / derived).exists(), derived  # scored on frames that are gone
