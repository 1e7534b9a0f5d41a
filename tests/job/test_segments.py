"""Long files split into segments give exactly the frames of a whole-file pass, spread over work items."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from apache_beam.pvalue import TaggedOutput

from tests.support.fakes import FakeModelLoader
from yamnet_beam import framing
from yamnet_beam.audio import decode_file, open_audio, segment_quantum
from yamnet_beam.job.embed import _CommitSegmentedFileFn, _EmbedPartFn, _EmbedSegmentFn
from yamnet_beam.job.frames import EmbedSettings
from yamnet_beam.job.inputs import InputFile
from yamnet_beam.job.parts import Part
from yamnet_beam.job.pipeline import run
from yamnet_beam.table import schema

LABELS = [str(i) for i in range(521)]


def _signal(seconds, sr, channels):
    rng = np.random.default_rng(int(seconds * sr))
    t = np.arange(int(seconds * sr)) / sr
    x = 0.2 * np.sin(2 * np.pi * 330 * t * (1 + t / seconds))[:, None] + 0.05 * rng.standard_normal((len(t), channels))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def long_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("long")
    files = {}
    for name, sr, ch, fmt in [
        ("a16k.wav", 16000, 1, "WAV"),
        ("b44k.flac", 44100, 2, "FLAC"),
        ("c48k.mp3", 48000, 2, "MP3"),
    ]:
        path = d / name
        with sf.SoundFile(path, "w", sr, ch, format=fmt) as f:  # chunked: libsndfile's encoders dislike huge writes
            x = _signal(47.3, sr, ch)
            for i in range(0, len(x), sr * 5):
                f.write(x[i : i + sr * 5])
        files[name] = path
    return files


@pytest.mark.parametrize("name", ["a16k.wav", "b44k.flac"])
@pytest.mark.parametrize("shard_s", [5, 12.3])
def test_segment_audio_equals_whole_file(long_files, name, shard_s):
    path = long_files[name]
    whole, info, _ = decode_file(str(path))
    assert info.seekable
    bounds = framing.segment_bounds(len(whole), int(shard_s * 16000), quantum=segment_quantum(info.sample_rate))
    assert len(bounds) > 2
    frames = []
    for start, stop, _first in bounds:
        with open_audio(str(path), segment=(start, stop)) as stream:
            seg = np.concatenate(list(stream.blocks()))
        framer = framing.StreamFramer()
        frames += [b.frames for b in framer.push(seg)]
        if stop is None:
            frames += [b.frames for b in framer.finish()]
    got, ref = np.concatenate(frames), framing.frame_signal(whole)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)  # bit for bit, resampled or not


def _fn(cls, out, shard_s):
    fn = cls(
        FakeModelLoader(),
        LABELS,
        schema.frames_schema(),
        schema.files_schema(),
        str(out),
        EmbedSettings(shard_seconds=shard_s, fingerprint="fp", frames_per_batch=16),
    )
    fn.setup()
    return fn


def test_dofns_split_embed_and_commit_a_long_file(long_files, tmp_path):
    """Driven by hand: the part hands the long file on as segments; their rows add up to one files row."""
    path = long_files["b44k.flac"]
    part_fn = _fn(_EmbedPartFn, tmp_path, 10)
    outs = list(part_fn.process(Part("p1", (InputFile(str(path)),))))
    segments = [o.value for o in outs if isinstance(o, TaggedOutput)]
    whole, info, duration = decode_file(str(path))
    expected = framing.segment_bounds(len(whole), 10 * 16000, quantum=segment_quantum(44100))
    assert len(segments) == len(outs) == len(expected) >= 4
    assert [(s.start, s.stop, s.first_frame) for s in segments] == expected
    assert not (tmp_path / "files").exists()  # the part committed nothing: its only file went to segments
    seg_fn = _fn(_EmbedSegmentFn, tmp_path, 10)
    results = [r for s in reversed(segments) for r in seg_fn.process(s)]  # any order
    assert {k for k, _ in results} == {segments[0].part_id}
    [row] = list(_fn(_CommitSegmentedFileFn, tmp_path, 10).process((segments[0].part_id, [r for _, r in results])))
    assert row["status"] == "ok" and row["frames"] == framing.num_frames(len(whole))
    assert row["duration_s"] == pytest.approx(duration) and row["sample_rate"] == 44100
    frames = pq.read_table(tmp_path / "frames").sort_by("frame")
    assert frames.column("frame").to_pylist() == list(range(row["frames"]))
    assert pq.read_table(tmp_path / "files").to_pylist() == [row]
    np.testing.assert_allclose(frames.column("start_s").to_numpy(), framing.frame_times(0, row["frames"])[0])


@pytest.fixture(scope="module")
def runs(long_files, tmp_path_factory, fixtures_dir, model_path, class_map_path):
    d = next(iter(long_files.values())).parent
    (d / "short.wav").write_bytes((fixtures_dir / "speech_22k_mono.wav").read_bytes())
    base = ["--input", str(d), "--model", str(model_path), "--class_map", str(class_map_path)]
    whole = tmp_path_factory.mktemp("whole")
    run([*base, "--output", str(whole), "--shard_s", "0"])
    sharded = tmp_path_factory.mktemp("sharded")
    run(
        [
            *base,
            "--output",
            str(sharded),
            "--shard_s",
            "10",
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        ]
    )
    return whole, sharded


def test_sharded_run_equals_whole_file_run(runs):
    whole, sharded = runs
    cols = ["path", "frame", "start_s", "valid_samples", "scores", "embedding"]
    a = pq.read_table(whole / "frames", columns=cols).sort_by([("path", "ascending"), ("frame", "ascending")])
    b = pq.read_table(sharded / "frames", columns=cols).sort_by([("path", "ascending"), ("frame", "ascending")])
    assert a.select(["path", "frame", "start_s", "valid_samples"]).equals(
        b.select(["path", "frame", "start_s", "valid_samples"])
    )
    # the same audio reaches the model, so the same numbers come out: bit for bit
    assert a.equals(b)
    fa = pq.read_table(whole / "files").drop(["part"]).sort_by("path").to_pylist()
    fb = pq.read_table(sharded / "files").drop(["part"]).sort_by("path").to_pylist()
    assert fa == fb


def test_lossy_files_are_not_split(long_files):
    """libsndfile's seeks in MP3/Vorbis/Opus are not bit-exact (and VBR MP3 headers misstate lengths):
    such files are processed whole; PCM-like data (WAV, FLAC) is split."""
    seekable = {}
    for name, path in long_files.items():
        with open_audio(str(path)) as stream:
            seekable[name] = stream.info.seekable
    assert seekable == {"a16k.wav": True, "b44k.flac": True, "c48k.mp3": False}


def test_sharded_files_have_one_marker_and_segment_parts(runs):
    _, sharded = runs
    names = sorted(p.name for p in (sharded / "frames").iterdir())
    assert sum("-s0000" in n for n in names) >= 2 * 4  # two long PCM-like files, >= 4 segments each
    split = {
        path.rsplit("/", 1)[1]
        for part in (sharded / "frames").iterdir()
        if "-s0" in part.name
        for path in pq.read_table(part, columns=["path"])["path"].unique().to_pylist()
    }
    assert split == {"a16k.wav", "b44k.flac"}  # the MP3 went whole, in an ordinary part
    files = pq.read_table(sharded / "files").to_pylist()
    assert len(files) == 4 and len({r["path"] for r in files}) == 4


def test_queries_see_segment_frames(runs):
    """Readers keep only committed frames parts: a long file's segment parts count as committed."""
    from yamnet_beam.analysis import output, query

    tops = [query.top_classes(output.open_output(str(out)), k=3).sort_by("path").to_pylist() for out in runs]
    assert tops[0] == tops[1] and len({r["path"] for r in tops[0]}) == 4
