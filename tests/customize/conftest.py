"""One labelled set, two real runs (plain, then ``run --head`` with the head trained on the first), per session.

The set is the demo's labelled audio plus a "speech" class from the shared fixtures at several levels, all
16 kHz mono, so MediaPipe can be fed the very samples the pipeline read. Both runs use ``--hop_s 0.975``
(MediaPipe's non-overlapping windows).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import soxr

from yamnet_beam.customize.train import train
from yamnet_beam.demo import make_labelled_audio
from yamnet_beam.job.pipeline import run
from yamnet_beam.model.head import load_head

HOP = "0.975"
SPEECH = ["speech_16k_float32.wav", "speech_22k_mono.wav"]
LEVELS = (1.0, 0.5, 0.25)


@pytest.fixture(scope="session")
def labelled(tmp_path_factory, fixtures_dir):
    audio = tmp_path_factory.mktemp("labelled_audio")
    csv_path = make_labelled_audio(audio)
    rows = csv_path.read_text().splitlines()
    for name in SPEECH:
        x, sr = sf.read(fixtures_dir / name, dtype="float32")
        x = x if sr == 16000 else soxr.resample(x, sr, 16000).astype(np.float32)
        for level in LEVELS:
            out = f"speech_{name.split('_')[1]}_{level}.wav"
            sf.write(audio / out, (level * x).astype(np.float32), 16000, subtype="FLOAT")
            rows.append(f"{out},speech")
    (audio / "broken.wav").write_bytes(b"not audio")  # an error row, labelled: reported, not crashed on
    rows += ["broken.wav,speech", "not_there.wav,tone"]  # a label whose file is not in the output
    csv_path.write_text("\n".join(rows) + "\n")
    return {"audio": audio, "csv": csv_path}


@pytest.fixture(scope="session")
def plain_out(labelled, tmp_path_factory, model_args):
    out = tmp_path_factory.mktemp("plain") / "out"
    run(["--input", str(labelled["audio"]), "--output", str(out), "--hop_s", HOP, *model_args])
    return out


@pytest.fixture(scope="session")
def head_dir(plain_out, labelled, tmp_path_factory):
    d = tmp_path_factory.mktemp("heads") / "sounds"
    train(str(plain_out), str(labelled["csv"]), str(d), folds=3)
    return d


@pytest.fixture(scope="session")
def mlp_head_dir(plain_out, labelled, tmp_path_factory):
    d = tmp_path_factory.mktemp("heads") / "sounds_mlp"
    train(str(plain_out), str(labelled["csv"]), str(d), head_type="mlp", folds=3, hidden=64)
    return d


@pytest.fixture(scope="session")
def multilabel_csv(labelled):
    """The labels plus a second label, "tonal", on every tone and chirp: a multi-label (sigmoid) head."""
    rows = labelled["csv"].read_text().splitlines()
    rows += [f"{r.split(',')[0]},tonal" for r in rows[1:] if r.startswith(("tone", "chirp"))]
    csv = labelled["audio"] / "multi.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


@pytest.fixture(scope="session")
def multi_head_dir(plain_out, multilabel_csv, tmp_path_factory):
    d = tmp_path_factory.mktemp("heads") / "sounds_multi"
    train(str(plain_out), str(multilabel_csv), str(d), folds=3)
    return d


@pytest.fixture(scope="session")
def head(head_dir):
    return load_head(str(head_dir))


@pytest.fixture(scope="session")
def head_out(labelled, head_dir, tmp_path_factory, model_args):
    """``run --head`` over the same audio: frames/ with the head's columns."""
    out = tmp_path_factory.mktemp("withhead") / "out"
    run(
        [
            "--input",
            str(labelled["audio"]),
            "--output",
            str(out),
            "--hop_s",
            HOP,
            "--head",
            str(head_dir),
            *model_args,
        ]
    )
    return out


@pytest.fixture
def foreign_head_dir(head_dir, tmp_path):
    """A copy of the head claiming another YAMNet model (SHA-256 00...0)."""
    foreign = tmp_path / "foreign"
    shutil.copytree(head_dir, foreign)
    doc = json.loads((foreign / "head.json").read_text())
    doc["yamnet_sha256"] = "0" * 64
    (foreign / "head.json").write_text(json.dumps(doc))
    return foreign


@pytest.fixture
def bare_out(plain_out, tmp_path):
    """A copy of the plain output without any applied head (heads/)."""
    copy = tmp_path / "bare"
    shutil.copytree(plain_out, copy, ignore=shutil.ignore_patterns("heads"))
    return copy
