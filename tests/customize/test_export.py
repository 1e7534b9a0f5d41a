"""export: YAMNet's scores survive bit for bit, the custom output is the head, and MediaPipe runs the file.

MediaPipe (a test dependency) is the independent check that the TFLite metadata is right: its
AudioClassifier cuts audio into non-overlapping 0.975 s windows, so its per-window custom scores must equal
the pipeline's head scores of a ``--hop_s 0.975`` run.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from ai_edge_litert.interpreter import Interpreter

from yamnet_beam.cli import main
from yamnet_beam.customize.export import YAMNET_LABELS_FILE, append_head
from yamnet_beam.job.pipeline import run
from yamnet_beam.model import ModelError
from yamnet_beam.model.head import Head, HeadError, load_head

WINDOW = 15600
NAMES = ["tone_2.wav", "chirp_1.wav", "noise_band_3.wav", "pulses_0.wav", "speech_16k_0.5.wav"]


def windows(x: np.ndarray) -> np.ndarray:
    n = -(-len(x) // WINDOW)
    out = np.zeros((n, WINDOW), np.float32)
    out.reshape(-1)[: len(x)] = x
    return out


def invoke(model: bytes, frames: np.ndarray) -> list[np.ndarray]:
    """Each output of the subgraph per frame, in output order, from a direct LiteRT call."""
    it = Interpreter(model_content=model, num_threads=1)
    it.allocate_tensors()
    inp, outs = it.get_input_details()[0]["index"], it.get_output_details()
    res = [[] for _ in outs]
    for f in frames:
        it.set_tensor(inp, f[None])
        it.invoke()
        for j, o in enumerate(outs):
            res[j].append(it.get_tensor(o["index"])[0].copy())
    return [np.stack(r) for r in res]


@pytest.fixture(scope="module")
def exported(head_dir, tmp_path_factory, model_path, class_map_path):
    d = tmp_path_factory.mktemp("export")
    both, only = d / "custom.tflite", d / "custom_only.tflite"
    args = ["--model", str(model_path), "--class_map", str(class_map_path)]
    assert main(["export", str(head_dir), "-o", str(both), *args]) == 0
    assert main(["export", str(head_dir), "-o", str(only), "--custom_only", "--model", str(model_path)]) == 0
    return {"both": both.read_bytes(), "only": only.read_bytes(), "paths": {"both": both, "only": only}}


@pytest.fixture(scope="module")
def pipeline_head(head_out):
    t = pq.read_table(head_out / "frames", columns=["path", "frame", "head_scores", "head_labels"])
    t = t.sort_by([("path", "ascending"), ("frame", "ascending")])
    paths = np.asarray(t.column("path").to_pylist())
    scores = np.stack(t.column("head_scores").to_numpy(zero_copy_only=False))
    labels = t.column("head_labels").to_pylist()
    return {
        name: (scores[paths == p], [labels[i] for i in np.flatnonzero(paths == p)])
        for name in NAMES
        for p in [next(q for q in set(paths) if q.endswith("/" + name))]
    }


def test_yamnet_scores_bit_identical_and_custom_scores_are_the_heads(exported, labelled, model_path, pipeline_head):
    original = model_path.read_bytes()
    for name in NAMES:
        x, sr = sf.read(labelled["audio"] / name, dtype="float32")
        frames = windows(x)
        ref_scores = invoke(original, frames)[0]  # Identity: the 521 scores (Identity_1 is the spectrogram)
        yamnet, custom = invoke(exported["both"], frames)
        np.testing.assert_array_equal(yamnet, ref_scores)
        np.testing.assert_allclose(custom, pipeline_head[name][0], atol=1e-5)
        (only,) = invoke(exported["only"], frames)
        np.testing.assert_allclose(only, custom, atol=1e-6)


@pytest.mark.parametrize("which", ["mlp_head_dir", "multi_head_dir"])
def test_mlp_and_sigmoid_heads_export_to_their_scores(which, request, labelled, plain_out, model_path, class_map_path):
    """FULLY_CONNECTED + RELU + FULLY_CONNECTED + SOFTMAX, and FULLY_CONNECTED + LOGISTIC: the head's own scores."""
    head_dir = request.getfixturevalue(which)
    head = load_head(str(head_dir))
    dest = head_dir.parent / f"{which}.tflite"
    assert (
        main(["export", str(head_dir), "-o", str(dest), "--model", str(model_path), "--class_map", str(class_map_path)])
        == 0
    )
    t = pq.read_table(plain_out / "frames", columns=["path", "frame", "embedding"])
    t = t.sort_by([("path", "ascending"), ("frame", "ascending")])
    paths = np.asarray(t.column("path").to_pylist())
    emb = np.stack(t.column("embedding").to_numpy(zero_copy_only=False))
    for name in NAMES[:3]:
        x, _ = sf.read(labelled["audio"] / name, dtype="float32")
        yamnet, custom = invoke(dest.read_bytes(), windows(x))
        np.testing.assert_array_equal(yamnet, invoke(model_path.read_bytes(), windows(x))[0])
        np.testing.assert_allclose(custom, head.scores(emb[paths == str(labelled["audio"] / name)]), atol=1e-5)


def _classify(model: bytes, x: np.ndarray):
    from mediapipe.tasks.python.audio import audio_classifier as ac
    from mediapipe.tasks.python.components.containers import audio_data
    from mediapipe.tasks.python.core import base_options

    opts = ac.AudioClassifierOptions(base_options=base_options.BaseOptions(model_asset_buffer=model), max_results=-1)
    with ac.AudioClassifier.create_from_options(opts) as clf:
        results = clf.classify(audio_data.AudioData.create_from_array(x, 16000))
    return [{c.head_name: {k.category_name: k.score for k in c.categories} for c in r.classifications} for r in results]


@pytest.mark.parametrize("variant", ["both", "only"])
def test_mediapipe_audio_classifier_agrees_with_the_pipeline(exported, labelled, pipeline_head, head, variant):
    """Per window: MediaPipe reports exactly the classes over their calibrated threshold, with the pipeline's scores."""
    for name in NAMES:
        x, _ = sf.read(labelled["audio"] / name, dtype="float32")
        got = _classify(exported[variant], x)
        scores, over = pipeline_head[name]
        assert len(got) == len(scores)
        for i, window in enumerate(got):
            assert set(window) == ({"custom"} if variant == "only" else {"yamnet", "custom"})
            assert sorted(window["custom"]) == sorted(over[i]), f"{name} window {i}"
            for cls, s in window["custom"].items():
                assert s == pytest.approx(float(scores[i, head.classes.index(cls)]), abs=1e-5)
            if variant == "both":
                assert len(window["yamnet"]) == 521


def test_export_refuses_a_head_of_another_model(foreign_head_dir, tmp_path, model_path):
    from yamnet_beam.customize.export import export_head

    with pytest.raises(HeadError, match="trained on embeddings of the model"):
        export_head(str(foreign_head_dir), str(tmp_path / "x.tflite"), str(model_path))
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize("width", [1024, 521])
def test_a_head_as_wide_as_the_embedding_or_the_scores_is_refused(model_path, width):
    """Those widths would be taken for YAMNet's embedding (1024) or its scores and label file (521) when run."""
    layers = [(np.zeros((1024, width), np.float32), np.zeros(width, np.float32))]
    wide = Head([str(i) for i in range(width)], layers, "sigmoid", [0.5] * width, yamnet_sha256="0" * 64)
    with pytest.raises(ValueError, match=f"{width} classes cannot be exported"):
        append_head(model_path.read_bytes(), wide, None, custom_only=True)


def test_run_accepts_the_exported_model(exported, labelled, plain_out, class_map_path, tmp_path):
    """`run --model custom.tflite`: frames equal, bit for bit, a run with the original model (labels from the file)."""
    audio = tmp_path / "audio"
    audio.mkdir()
    for name in NAMES:
        (audio / name).write_bytes((labelled["audio"] / name).read_bytes())
    out = tmp_path / "out"
    run(
        [
            "--input",
            str(audio),
            "--output",
            str(out),
            "--hop_s",
            "0.975",
            "--model",
            str(exported["paths"]["both"]),
        ]
    )
    cols = ["path", "frame", "start_s", "valid_samples", "scores", "embedding", "top_label", "top_score"]
    keys = [("path", "ascending"), ("frame", "ascending")]
    got = pq.read_table(out / "frames", columns=cols).sort_by(keys)
    ref = pq.read_table(plain_out / "frames", columns=cols).sort_by(keys)
    ref = ref.filter(pc.is_in(ref.column("path"), value_set=pa.array([str(labelled["audio"] / n) for n in NAMES])))
    assert got.num_rows == ref.num_rows > 0
    assert [p.rsplit("/", 1)[1] for p in got.column("path").to_pylist()] == [
        p.rsplit("/", 1)[1] for p in ref.column("path").to_pylist()
    ]
    for c in cols[1:]:
        assert got.column(c).equals(ref.column(c)), c
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["labels_source"] == f"model:{YAMNET_LABELS_FILE}"
    assert manifest["model_sha256"] == hashlib.sha256(exported["both"]).hexdigest()
    names = [[r["display_name"] for r in csv.DictReader(f.open())] for f in (out / "labels.csv", class_map_path)]
    assert names[0] == names[1] and len(names[0]) == 521  # the labels packed in the exported file are YAMNet's


def test_run_refuses_a_custom_only_export_with_a_hint(exported, labelled, tmp_path):
    with pytest.raises(ModelError, match="--custom_only"):
        run(
            [
                "--input",
                str(labelled["audio"]),
                "--output",
                str(tmp_path / "o"),
                "--model",
                str(exported["paths"]["only"]),
            ]
        )
    assert not (tmp_path / "o").exists()


def test_export_defaults_to_the_model_the_head_was_trained_on(head_dir, tmp_path, monkeypatch, model_path):
    """No --model and no default model anywhere: the training run's model (recorded in metrics.json) is used."""
    monkeypatch.setenv("YAMNET_BEAM_MODEL", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    recorded = json.loads((head_dir / "metrics.json").read_text())["trained_on"]["model_uri"]
    assert Path(recorded).resolve() == model_path.resolve()
    dest = tmp_path / "h.tflite"
    assert main(["export", "--head", str(head_dir), "-o", str(dest)]) == 0
    assert dest.stat().st_size > model_path.stat().st_size
