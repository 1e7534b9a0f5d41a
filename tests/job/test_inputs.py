"""--input expansion: globs, directories, manifests, URLs; nothing matched is an error naming the pattern."""

import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from yamnet_beam.job.inputs import InputError
from yamnet_beam.job.listing import expand_input, match_inputs


def test_directory_recurses_audio_only(tree):
    got = [f.path for f in expand_input(str(tree / "a"))]
    assert got == [str(tree / "a/b/y.flac"), str(tree / "a/b/z.MP3"), str(tree / "a/x.wav")]


def test_recursive_glob_and_sizes(tree):
    got = expand_input(str(tree / "**" / "*.flac"))
    assert [f.path for f in got] == [str(tree / "a/b/y.flac")]
    assert got[0].size_bytes == 4


def test_file_url_and_plain_file(tree):
    assert [f.path for f in expand_input(f"file://{tree}/top.ogg")] == [str(tree / "top.ogg")]
    assert [f.path for f in expand_input(str(tree / "top.ogg"))] == [str(tree / "top.ogg")]


def test_txt_manifest_relative_and_absolute(tree):
    manifest = tree / "list.txt"
    manifest.write_text(f"# comment\na/x.wav\n\n{tree / 'top.ogg'}\nmemory://elsewhere/q.wav\n")
    got = [f.path for f in expand_input(str(manifest))]
    assert got == [str(tree / "a/x.wav"), str(tree / "top.ogg"), "memory:///elsewhere/q.wav"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_manifests(tree, fmt):
    table = pa.table({"path": [str(tree / "a/x.wav"), "a/b/y.flac"], "label": ["u", "v"]})
    target = tree / f"m.{fmt}"
    if fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, target)
    else:
        pq.write_table(table, target)
    assert [f.path for f in expand_input(str(target))] == [str(tree / "a/x.wav"), str(tree / "a/b/y.flac")]


def test_csv_manifest_without_path_column(tree):
    (tree / "m.csv").write_text("file\nx.wav\n")
    with pytest.raises(InputError, match="no 'path' column"):
        expand_input(str(tree / "m.csv"))


@pytest.mark.parametrize("pattern", ["nothing/*.wav", "missing.wav", "empty_dir"])
def test_nothing_matched_names_the_pattern(tree, pattern):
    (tree / "empty_dir").mkdir()
    with pytest.raises(InputError, match=pattern.replace("*", r"\*")):
        match_inputs([str(tree / pattern)])


def test_no_input_at_all():
    with pytest.raises(InputError, match="No --input"):
        match_inputs([])


def test_repeated_inputs_are_deduplicated_in_order(tree):
    got = [f.path for f in match_inputs([str(tree / "top.ogg"), str(tree / "a"), str(tree / "a/x.wav")])]
    assert got == [str(tree / "top.ogg"), str(tree / "a/b/y.flac"), str(tree / "a/b/z.MP3"), str(tree / "a/x.wav")]


def test_memory_filesystem_urls(tree):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/audio/one.wav", b"RIFF")
    fs.pipe("/bucket/audio/deep/two.flac", b"fLaC")
    try:
        got = [f.path for f in expand_input("memory://bucket/audio/**/*.flac")]
        assert got == ["memory:///bucket/audio/deep/two.flac"]
        assert len(expand_input("memory://bucket/audio")) == 2
    finally:
        fs.rm("/bucket", recursive=True)


def test_real_fixture_dir(fixtures_dir, tmp_path):
    shutil.copytree(fixtures_dir, tmp_path / "fx")
    got = expand_input(str(tmp_path / "fx"))
    assert len(got) == len(list(fixtures_dir.iterdir()))  # every fixture has an audio extension
