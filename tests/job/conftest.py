"""Fixtures shared by the matching tests (in-process expansion and in-pipeline listing)."""

import pytest

from tests.support.index_data import fresh_out, index_source  # noqa: F401  (the index job's tests)


@pytest.fixture
def tree(tmp_path):
    """Audio (any case of extension), non-audio and a top-level file, two levels deep."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["a/x.wav", "a/b/y.flac", "a/b/z.MP3", "a/notes.txt.bak", "a/b/readme.md", "top.ogg"]:
        (tmp_path / name).write_bytes(b"RIFF")
    return tmp_path
