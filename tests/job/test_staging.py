"""Launcher = workers: a staged job carries the launcher's versions; a worker on others writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from tests.support.fakes import FakeModelLoader
from yamnet_beam.job import checks, frames, pipeline
from yamnet_beam.job.options import OptionsError, YamnetOptions
from yamnet_beam.job.staging import pin_worker_versions
from yamnet_beam.versions import VersionMismatchError, installed

PINS = {"apache-beam": "9.9.9", "numpy": "8.8.8"}


def test_nothing_is_staged_without_setup_file():
    options = PipelineOptions([])
    assert pin_worker_versions(options, PINS) is None
    assert options.view_as(SetupOptions).requirements_file is None


def test_setup_file_stages_the_pins_without_downloading_them_at_submission():
    options = PipelineOptions(["--setup_file", "./setup.py"])
    path = pin_worker_versions(options, PINS)
    setup = options.view_as(SetupOptions)
    assert setup.requirements_file == path
    assert Path(path).read_text() == "apache-beam==9.9.9\nnumpy==8.8.8\n"
    assert setup.requirements_cache == "skip"


def test_a_user_requirements_file_is_kept_and_pinned(tmp_path):
    user = tmp_path / "req.txt"
    user.write_text("duckdb>=1.1\n")
    options = PipelineOptions(["--setup_file", "./setup.py", "--requirements_file", str(user)])
    path = pin_worker_versions(options, PINS)
    assert Path(path).read_text() == "duckdb>=1.1\napache-beam==9.9.9\nnumpy==8.8.8\n"
    assert options.view_as(SetupOptions).requirements_cache is None  # the user's choice of cache stays Beam's


def test_a_contradicting_requirements_file_is_an_options_error(tmp_path):
    user = tmp_path / "req.txt"
    user.write_text("numpy==1.26.0\n")
    options = PipelineOptions(["--setup_file", "./setup.py", "--requirements_file", str(user)])
    with pytest.raises(OptionsError, match=r"--requirements_file .*req\.txt: .*numpy==8\.8\.8"):
        pin_worker_versions(options, PINS)


def test_a_worker_on_other_versions_fails_setup_before_writing(tmp_path):
    settings = frames.EmbedSettings(versions=(("numpy", "0.0.1"),))
    fn = frames._OutputFn(FakeModelLoader(), ["a"], None, None, str(tmp_path), settings)
    with pytest.raises(VersionMismatchError, match=r"numpy \S+ \(launcher 0\.0\.1\)"):
        fn.setup()
    assert list(tmp_path.iterdir()) == []


def test_the_job_records_and_checks_the_launchers_versions(tmp_path, fixtures_dir, model_args, monkeypatch):
    argv = ["--input", str(fixtures_dir / "tone_1khz_16k.wav"), "--output", str(tmp_path / "o"), *model_args]
    plan = checks.plan_run(PipelineOptions(argv).view_as(YamnetOptions))
    assert dict(plan.settings.versions) == installed() == plan.metadata["versions"]
    # A launcher that reports other versions than this (worker) process has: the job fails, nothing committed.
    monkeypatch.setattr(checks, "installed", lambda: {**installed(), "pyarrow": "0.0.1"})
    with pytest.raises(Exception, match=r"pyarrow \S+ \(launcher 0\.0\.1\)"):
        pipeline.run([*argv, "--output", str(tmp_path / "o2")])
    assert not list((tmp_path / "o2").glob("files/*.parquet"))
