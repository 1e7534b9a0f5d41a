"""Schemas are the single source of truth: builders produce exactly them, and Parquet round-trips them."""

import io
import weakref

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from yamnet_beam import framing
from yamnet_beam.table import schema


def _table(dtype: str, count: int = 5, first: int = 3):
    rng = np.random.default_rng(0)
    scores = rng.random((count, 521), dtype=np.float32)
    emb = rng.standard_normal((count, 1024)).astype(np.float32)
    names = [f"class{i}" for i in range(521)]
    start, end = framing.frame_times(first, count)
    valid = framing.valid_samples(first, count, 40_000)
    s = schema.frames_schema(dtype)
    return s, schema.frames_table(s, "a.wav", first, start, end, valid, scores, emb, names), scores, emb, names


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_frames_table_columns(dtype, tmp_path):
    s, table, scores, emb, names = _table(dtype)
    assert table.schema == s
    assert table.column("frame").to_pylist() == [3, 4, 5, 6, 7]
    assert table.column("start_s").to_pylist()[0] == 3 * 7680 / 16000
    got_scores = np.stack(table.column("scores").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(got_scores, scores)
    got_emb = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, 1024)
    np.testing.assert_array_equal(got_emb, emb.astype(dtype))
    top = scores.argmax(axis=1)
    assert table.column("top_label").to_pylist() == [names[i] for i in top]
    np.testing.assert_array_equal(table.column("top_score").to_numpy(), scores.max(axis=1))
    # Parquet round trip keeps the declared types, including fixed-size lists, and the metadata
    meta = {"model_sha256": "abc", "hop_samples": 7680}
    pq.write_table(table.cast(schema.frames_schema(dtype, metadata=meta)), tmp_path / "f.parquet", compression="zstd")
    back = pq.read_table(tmp_path / "f.parquet")
    assert back.schema.remove_metadata() == s
    assert schema.read_metadata(back.schema) == meta


def test_float16_halves_embedding_bytes():
    _, t32, *_ = _table("float32", 100)
    _, t16, *_ = _table("float16", 100)
    assert t16.column("embedding").nbytes * 2 == t32.column("embedding").nbytes


def test_files_rows_match_schema():
    rows = [
        schema.file_row(
            "a.wav",
            status="ok",
            frames=3,
            duration_s=1.5,
            sample_rate=16000,
            channels=1,
            format="WAV/PCM_16",
            decoder="soundfile",
            size_bytes=10,
        ),
        schema.file_row("b.wav", status="error", error_kind="corrupt", error="bad", size_bytes=0),
    ]
    table = schema.files_table(rows)
    assert table.schema == schema.FILES_SCHEMA
    assert table.column("status").to_pylist() == ["ok", "error"]
    assert table.column("error").to_pylist() == [None, "bad"]


@pytest.mark.parametrize("bad", [{"status": "maybe"}, {}])
def test_file_row_rejects_unknown_status(bad):
    with pytest.raises((ValueError, TypeError)):
        schema.file_row("a.wav", **bad)


def test_unknown_embedding_dtype():
    with pytest.raises(ValueError, match="embedding_dtype"):
        schema.frames_schema("int8")


def test_schema_types():
    s = schema.frames_schema()
    assert s.field("scores").type == pa.list_(pa.float32(), 521)
    assert s.field("embedding").type == pa.list_(pa.float32(), 1024)
    assert s.field("frame").type == pa.int32()


class _File(io.BytesIO):
    """A Python file object that can be weakly referenced (BytesIO cannot)."""


@pytest.mark.parametrize(
    "read",
    [
        lambda f: schema.read_table(f, ["a"]),
        lambda f: pa.Table.from_batches(schema.parquet_file(f).iter_batches(batch_size=100, columns=["a"])),
    ],
    ids=["read_table", "iter_batches"],
)
def test_reads_release_the_python_file_before_returning(read):
    # If an Arrow thread holds the last reference after the read returns, and drops it while the
    # interpreter exits, the process aborts. pq.read_table left the file alive ~20% of the time here.
    buf = io.BytesIO()
    pq.write_table(pa.table({"a": np.arange(1000), "b": np.arange(1000.0)}), buf)
    for _ in range(200):
        f = _File(buf.getvalue())
        alive = weakref.ref(f)
        table = read(f)
        del f
        assert alive() is None
        assert table.equals(pa.table({"a": np.arange(1000)}))
