"""FormParts: every distinct input in exactly one part, ids content-derived and order-independent."""

from __future__ import annotations

import random

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline as beam_test_pipeline

from yamnet_beam.job import parts as part_rules
from yamnet_beam.job.form_parts import FormParts
from yamnet_beam.job.inputs import InputFile
from yamnet_beam.job.parts import cut_bucket, part_shape

_COLLECTED: list = []


def _collect(x) -> None:
    _COLLECTED.append(x)


def _parts(items, **kw) -> list[part_rules.Part]:
    _COLLECTED.clear()
    with beam_test_pipeline.TestPipeline() as p:
        p | beam.Create(items) | FormParts("fp", **kw) | beam.Map(_collect)
    return list(_COLLECTED)


def _items(n: int, seed: int = 0, dup: int = 0):
    rng = random.Random(seed)
    files = [InputFile(f"/d/{rng.getrandbits(40):010x}.wav", rng.randrange(1, 5 << 20), 1.0) for _ in range(n)]
    items = [((0, i), f) for i, f in enumerate(files)]
    items += [((1, i), InputFile(f.path)) for i, f in enumerate(files[:dup])]  # a later --input naming them again
    rng.shuffle(items)
    return files, items


@pytest.mark.parametrize("n,part_files", [(1, 64), (24, 64), (1000, 64), (5000, 7)])
def test_every_input_in_exactly_one_part(n, part_files):
    files, items = _items(n, seed=n, dup=n // 3)
    parts = _parts(items, part_files=part_files, part_bytes=64 << 20)
    members = [f for p in parts for f in p.files]
    assert sorted(members, key=lambda f: f.path) == sorted(files, key=lambda f: f.path)  # first occurrence kept
    max_files, _ = part_shape(n, part_files)
    assert max(len(p.files) for p in parts) <= max_files
    assert len({p.id for p in parts}) == len(parts)


@pytest.mark.parametrize("n", [24, 100, 1000, 5000])
def test_part_count_close_to_todays(n):
    """At least today's count (small inputs still spread over ~16 parts), at most ~1/BUCKET_PARTS more."""
    files, items = _items(n, seed=n)
    today = len(part_rules.plan_parts(files, "fp"))
    assert today <= len(_parts(items)) <= today * (1 + 1 / part_rules.BUCKET_PARTS) + 1


def test_part_ids_do_not_depend_on_element_order_or_runs():
    _, items = _items(3000, seed=7, dup=500)
    a = {p.id: p for p in _parts(items)}
    b = {p.id: p for p in _parts(list(reversed(items)))}
    assert a == b


@pytest.mark.parametrize("seed", range(3))
def test_a_retried_bucket_cuts_the_same_parts(seed):
    """What a retried CutParts bundle sees: the same group, possibly in another order."""
    _, items = _items(700, seed=seed, dup=100)
    shuffled = random.Random(seed).sample(items, len(items))
    assert cut_bucket(items, "fp", 64, 64 << 20) == cut_bucket(shuffled, "fp", 64, 64 << 20)


def test_part_mb_is_respected():
    # 200 files allow 13 per part (200 / 16 parts), so only the byte limit keeps them to 2 of 30 MB
    files = [InputFile(f"/d/{i:04d}.wav", 30 << 20) for i in range(200)]
    parts = _parts([((0, i), f) for i, f in enumerate(files)], part_bytes=64 << 20)
    assert all(sum(f.size_bytes for f in p.files) <= 64 << 20 for p in parts)
    assert sorted(len(p.files) for p in parts)[len(parts) // 2 :] == [2] * (len(parts) - len(parts) // 2)


def test_pipeline_proto_does_not_grow_with_the_inputs(tmp_path, model_path, class_map_path):
    """The graph carries one spec per --input, not the inputs: 10 and 20 000 manifest entries, same proto size."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from yamnet_beam.job.checks import plan_run
    from yamnet_beam.job.options import YamnetOptions
    from yamnet_beam.job.pipeline import build_pipeline

    sizes = []
    for n in (10, 20_000):
        manifest = tmp_path / f"m{n:05d}.txt"
        manifest.write_text("".join(f"/nowhere/{i:08d}.wav\n" for i in range(n)))
        argv = ["--input", str(manifest), "--output", str(tmp_path / f"o{n:05d}")]
        opts = PipelineOptions([*argv, "--model", str(model_path), "--class_map", str(class_map_path)])
        p = beam.Pipeline(options=opts)
        build_pipeline(p, plan_run(opts.view_as(YamnetOptions)), opts.view_as(YamnetOptions))
        sizes.append(len(p.to_runner_api().SerializeToString()))
    assert abs(sizes[1] - sizes[0]) < 256, sizes  # only the run id and paths' lengths differ
    assert sizes[1] < 1 << 20
