"""In-pipeline listing (job.listing + planning.ListInputs) gives what the launcher expansion (job.inputs) gives.

Expectations are written out by hand (the same tree and cases as tests/job/test_inputs.py), or read
independently (Path.read_text().splitlines() for manifests, os.walk for trees).
"""

from __future__ import annotations

import os
import random

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline as beam_test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from yamnet_beam.job import listing
from yamnet_beam.job.inputs import InputError, InputFile
from yamnet_beam.job.list_inputs import ListInputs
from yamnet_beam.job.listing import check_input, check_inputs
from yamnet_beam.uris import display_path


def _first(items):
    return min(items, key=lambda item: item[0])


class KeepFirstPerPath(beam.PTransform):
    """``(order, InputFile)`` -> ``(display path, InputFile)`` of the first occurrence (what FormParts keeps)."""

    def expand(self, listed):
        return (
            listed
            | "KeyByPath" >> beam.Map(lambda item: (display_path(item[1].path), item))
            | "FirstPerPath" >> beam.CombinePerKey(_first)
            | "DropOrder" >> beam.MapTuple(lambda k, item: (k, item[1]))
        )


_COLLECTED: list = []  # module-level, so the pickled function below refers to it instead of copying it


def _collect(x) -> None:
    _COLLECTED.append(x)


def _run(build) -> list:
    _COLLECTED.clear()
    with beam_test_pipeline.TestPipeline() as p:
        build(p) | beam.Map(_collect)  # the in-process runner shares this module
    return list(_COLLECTED)


def expand(patterns, **kw) -> list[str]:
    """Runs ListInputs + KeepFirstPerPath on the DirectRunner; returns the paths sorted."""
    specs = check_inputs([str(p) for p in patterns])
    return sorted(_run(lambda p: p | ListInputs(specs, **kw) | KeepFirstPerPath() | beam.Map(lambda kv: kv[1].path)))


def run_listed(patterns, **kw) -> list[tuple[tuple[int, int], InputFile]]:
    specs = check_inputs([str(p) for p in patterns])
    return _run(lambda p: p | ListInputs(specs, **kw))


# The same cases as the package's tests/test_inputs.py ------------------------------------------


def test_directory_recurses_audio_only(tree):
    assert expand([tree / "a"]) == sorted([str(tree / "a/b/y.flac"), str(tree / "a/b/z.MP3"), str(tree / "a/x.wav")])


def test_recursive_glob_matches_zero_or_more_levels_like_fsspec(tree):
    assert expand([tree / "**" / "*.flac"]) == [str(tree / "a/b/y.flac")]
    assert expand([tree / "**" / "*.ogg"]) == [str(tree / "top.ogg")]  # Beam's own ** would miss this one
    assert expand([tree / "*" / "*.wav"]) == [str(tree / "a/x.wav")]
    assert expand([tree / "a*" / "**" / "*.wav"]) == [str(tree / "a/x.wav")]


def test_sizes_come_from_the_listing(tree):
    (got,) = [f for _, f in run_listed([tree / "**" / "*.flac"])]
    assert got.size_bytes == 4 and got.mtime == pytest.approx(os.stat(tree / "a/b/y.flac").st_mtime)


def test_file_url_and_plain_file(tree):
    assert expand([f"file://{tree}/top.ogg"]) == [str(tree / "top.ogg")]
    assert expand([tree / "top.ogg"]) == [str(tree / "top.ogg")]


def test_txt_manifest_relative_and_absolute(tree):
    manifest = tree / "list.txt"
    manifest.write_text(f"# comment\na/x.wav\n\n{tree / 'top.ogg'}\nmemory://elsewhere/q.wav\n")
    assert expand([manifest]) == sorted([str(tree / "a/x.wav"), str(tree / "top.ogg"), "memory:///elsewhere/q.wav"])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_manifests_with_identity_columns(tree, fmt):
    table = pa.table(
        {
            "path": [str(tree / "a/x.wav"), "a/b/y.flac", "missing.wav"],
            "label": ["u", "v", "w"],
            "size_bytes": [4, None, 9],
        }
    )
    target = tree / f"m.{fmt}"
    if fmt == "csv":
        pacsv.write_csv(table, target)
    else:
        pq.write_table(table, target, row_group_size=1)  # three row groups: three ranges
    got = {f.path: f for _, f in run_listed([target])}
    assert sorted(got) == sorted([str(tree / "a/x.wav"), str(tree / "a/b/y.flac"), str(tree / "missing.wav")])
    assert got[str(tree / "a/x.wav")].size_bytes == 4
    assert got[str(tree / "a/b/y.flac")].size_bytes is None
    assert got[str(tree / "missing.wav")].size_bytes == 9  # entries are not stat'ed: a missing one is still listed


def test_manifest_entry_with_unknown_protocol_is_still_listed(tree):
    (tree / "m.txt").write_text("nosuchproto://x/a.wav\na/x.wav\n")
    assert expand([tree / "m.txt"]) == sorted(["nosuchproto://x/a.wav", str(tree / "a/x.wav")])


def test_csv_manifest_without_path_column(tree):
    (tree / "m.csv").write_text("file\nx.wav\n")
    with pytest.raises(InputError, match="no 'path' column"):
        check_input(0, str(tree / "m.csv"))


@pytest.mark.parametrize("pattern", ["nothing/*.wav", "missing.wav", "empty_dir", "a/*.flac", "**/*.aiff"])
def test_nothing_matched_names_the_pattern(tree, pattern):
    (tree / "empty_dir").mkdir()
    with pytest.raises(InputError, match=str(tree / pattern).replace("*", r"\*")):
        check_inputs([str(tree / pattern)])


def test_empty_manifest_stops_the_job(tree):
    (tree / "empty.txt").write_text("# nothing here\n\n")
    with pytest.raises(InputError, match="no entries"):
        check_input(0, str(tree / "empty.txt"))


def test_no_input_at_all():
    with pytest.raises(InputError, match="No --input"):
        check_inputs([])


def test_repeated_inputs_keep_the_first_occurrence(tree):
    manifest = tree / "m.txt"
    manifest.write_text("top.ogg\ntop.ogg\n")
    specs = check_inputs([str(tree / "a"), str(manifest), str(tree / "top.ogg"), str(tree / "a/x.wav")])
    with beam_test_pipeline.TestPipeline() as p:
        firsts = p | ListInputs(specs) | KeepFirstPerPath()
        assert_that(
            firsts | beam.MapTuple(lambda k, f: (k, f.size_bytes)),
            equal_to(
                [
                    (str(tree / "a/b/y.flac"), 4),
                    (str(tree / "a/b/z.MP3"), 4),
                    (str(tree / "a/x.wav"), 4),  # from the directory listing (index 0), not the later file
                    (str(tree / "top.ogg"), None),  # from the manifest (index 1): no identity, as today
                ]
            ),
        )


def test_memory_filesystem_urls():
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/audio/one.wav", b"RIFF")
    fs.pipe("/bucket/audio/deep/two.flac", b"fLaC")
    try:
        assert expand(["memory://bucket/audio/**/*.flac"]) == ["memory:///bucket/audio/deep/two.flac"]
        assert len(expand(["memory://bucket/audio"])) == 2
    finally:
        fs.rm("/bucket", recursive=True)


# What only the in-pipeline version has to get right ---------------------------------------------


def test_non_utf8_names_survive_listing_and_shuffles(tmp_path):
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9.wav"
    open(raw, "wb").close()
    (tmp_path / "list.txt").write_bytes(b"caf\xe9.wav\n")
    specs = check_inputs([str(tmp_path), str(tmp_path / "list.txt")])
    with beam_test_pipeline.TestPipeline() as p:
        firsts = p | ListInputs(specs) | KeepFirstPerPath()
        assert_that(
            firsts | beam.MapTuple(lambda k, f: (k, os.fsencode(f.path), f.size_bytes)),
            equal_to([(str(tmp_path) + "/caf\\xe9.wav", raw, 0)]),
        )


@pytest.mark.parametrize("seed", range(5))
def test_text_ranges_cover_every_line_once(tmp_path, seed):
    rng = random.Random(seed)
    lines = [f"/d/{'x' * rng.randrange(0, 30)}{i}.wav" for i in range(rng.randrange(1, 300))]
    text = "\n".join(lines) + ("\n" if seed % 2 else "")  # with and without a final newline
    (tmp_path / "m.txt").write_text(text.replace("\n", "\r\n") if seed == 3 else text)
    spec = check_input(0, str(tmp_path / "m.txt"))
    fs = fsspec.filesystem("file")
    range_bytes = rng.randrange(1, 200)
    got = []
    for piece in listing.fan_out(spec, fs, range_bytes=range_bytes):
        got += [f.path for _, f in listing.read_range(spec, fs, piece)]
    assert got == (tmp_path / "m.txt").read_text().splitlines()  # in order: ranges are cut in order


def test_csv_ranges_through_the_pipeline(tmp_path):
    paths = [f"/d/{i:05d}.wav" for i in range(2000)]
    pacsv.write_csv(pa.table({"path": paths, "size_bytes": list(range(2000))}), tmp_path / "m.csv")
    listed = run_listed([tmp_path / "m.csv"], range_bytes=997)
    assert sorted(f.path for _, f in listed) == paths
    assert all(f.size_bytes == int(f.path[3:8]) for _, f in listed)


@pytest.mark.parametrize("target", [1, 4, 10_000])
def test_fan_out_width_does_not_change_the_result(tmp_path, target):
    expected = []
    for d in range(7):
        (tmp_path / f"d{d}").mkdir()
        for e in range(d):
            (tmp_path / f"d{d}" / f"e{e}").mkdir(parents=True)
            for k in range(3):
                f = tmp_path / f"d{d}" / f"e{e}" / f"f{k}.wav"
                f.touch()
                expected.append(str(f))
        (tmp_path / f"d{d}" / "top.wav").touch()
        expected.append(str(tmp_path / f"d{d}" / "top.wav"))
    (tmp_path / "root.wav").touch()
    expected.append(str(tmp_path / "root.wav"))
    walked = sorted(os.path.join(r, f) for r, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".wav"))
    assert walked == sorted(expected)
    for levels in (1, 2, 3):
        assert expand([tmp_path], target_prefixes=target, fanout_levels=levels) == walked
        assert expand([tmp_path / "**" / "*.wav"], target_prefixes=target, fanout_levels=levels) == walked
    assert expand([tmp_path / "d*" / "e*" / "*.wav"], target_prefixes=target) == sorted(
        p for p in walked if p.count("/") == str(tmp_path).count("/") + 3
    )


def test_fan_out_prunes_directories_the_pattern_cannot_enter(tmp_path):
    for d in ("2023-01", "2024-01", "2024-02"):
        (tmp_path / d / "deep").mkdir(parents=True)
        (tmp_path / d / "deep" / "x.wav").touch()
    spec = check_input(0, str(tmp_path / "2024-*" / "**" / "*.wav"))
    pieces = list(listing.fan_out(spec, fsspec.filesystem("file"), target=2, levels=1))
    assert sorted(p.path for p in pieces) == [str(tmp_path / "2024-01"), str(tmp_path / "2024-02")]


def test_check_stops_at_the_first_match(tmp_path, monkeypatch):
    for d in range(50):
        (tmp_path / f"d{d:02d}").mkdir()
        for k in range(20):
            (tmp_path / f"d{d:02d}" / f"f{k}.wav").touch()
    calls = []
    real_ls = fsspec.implementations.local.LocalFileSystem.ls

    def counting_ls(self, path, detail=False, **kw):
        calls.append(path)
        return real_ls(self, path, detail=detail, **kw)

    monkeypatch.setattr(fsspec.implementations.local.LocalFileSystem, "ls", counting_ls)
    check_input(0, str(tmp_path / "**" / "*.wav"))
    check_input(1, str(tmp_path))
    assert len(calls) == 4  # root and its first subdirectory, twice: not the 51 directories
