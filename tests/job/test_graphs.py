"""Every graph the project builds passes Beam's pipeline type check, without running it.

A new Beam release can tighten the construction-time checks (2.78 refused a GroupByKey's values annotated
as ``Sequence``); this catches that in seconds, for each graph: a fresh run, a resume, a run whose long
files are split into segments, ``--head``, ``apply`` and the README's RunInference example. Each graph is
also serialised to its runner proto, which is what a runner receives.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import PipelineOptions, TypeOptions

from tests.support import outputs
from yamnet_beam.job import apply
from yamnet_beam.job.checks import plan_run
from yamnet_beam.job.options import YamnetOptions
from yamnet_beam.job.pipeline import build_pipeline
from yamnet_beam.job.runinference import YamnetModelHandler
from yamnet_beam.model import inspect_model, read_model_bytes
from yamnet_beam.model.head import Head, save_head


class _Built(Exception):
    """Raised instead of running: the graph was constructed (and type-checked) completely."""


def _checked_pipeline(argv: list[str]) -> beam.Pipeline:
    options = PipelineOptions(argv)
    assert options.view_as(TypeOptions).pipeline_type_check, "the type check must be on (Beam's default)"
    return beam.Pipeline(options=options)


def _build_job(argv: list[str]) -> beam.Pipeline:
    opts = PipelineOptions(argv).view_as(YamnetOptions)
    plan = plan_run(opts)
    p = _checked_pipeline(argv)
    build_pipeline(p, plan, opts)
    p.to_runner_api()
    return p


def _labels(p: beam.Pipeline) -> set[str]:
    labels = set()

    class _Visit(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node):
            labels.add(node.full_label)

        def visit_transform(self, node):
            labels.add(node.full_label)

    p.visit(_Visit())
    return labels


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory, model_path) -> str:
    """A two-class head for the shared model (random weights: only the graph is built)."""
    model = inspect_model(read_model_bytes(str(model_path)))
    rng = np.random.default_rng(0)
    head = Head(
        classes=["a", "b"],
        layers=[(rng.normal(size=(1024, 2)), np.zeros(2))],
        activation="softmax",
        thresholds=[0.5, 0.5],
        yamnet_sha256=model.sha256,
    )
    path = str(tmp_path_factory.mktemp("head") / "h")
    save_head(head, path)
    return path


@pytest.mark.parametrize(
    "extra, step",
    [
        ([], "EmbedAudio/CommitLongFiles"),
        (["--shard_s", "1"], "EmbedAudio/CommitLongFiles"),
        (["--mode", "resume"], "ResolveResume"),
        (["--head", "HEAD"], "EmbedAudio"),
    ],
    ids=["fresh", "segmented", "resume", "head"],
)
def test_job_graph_passes_the_type_check(tmp_path, fixtures_dir, model_args, head_dir, extra, step):
    out = tmp_path / "out"
    if "resume" in extra:
        outputs.commit(out, "old", [str(fixtures_dir / "speech_16k_float32.wav")])
    extra = [head_dir if a == "HEAD" else a for a in extra]
    argv = ["--input", str(fixtures_dir / "speech_16k_float32.wav"), "--output", str(out), *model_args, *extra]
    p = _build_job(argv)
    assert step in _labels(p)


def test_apply_graph_passes_the_type_check(tmp_path, head_dir, monkeypatch, model_path):
    out = tmp_path / "out"
    outputs.commit(out, "p1", ["a.wav", "b.wav"])
    sha = inspect_model(read_model_bytes(str(model_path))).sha256
    (out / "manifest.json").write_text(f'{{"model_sha256": "{sha}"}}')
    built = []

    def _no_run(self, test_runner_api="AUTO"):
        self.to_runner_api()
        built.append(_labels(self))
        raise _Built

    monkeypatch.setattr(beam.Pipeline, "run", _no_run)
    with pytest.raises(_Built):
        apply.apply_head(str(out), head_dir)
    assert "ScoreEmbeddings" in built[0]


def test_runinference_example_passes_the_type_check(model_path):
    p = _checked_pipeline([])
    waveforms = p | beam.Create([np.zeros(16000, np.float32)])
    _ = waveforms | RunInference(YamnetModelHandler(str(model_path)))
    p.to_runner_api()
