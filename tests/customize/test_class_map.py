"""The class map is found one way for every command: --class_map, then $YAMNET_BEAM_CLASS_MAP, then the file
beside the model, then the default places (README "Models").

``run`` stores the names it used (its plan's labels, labels.csv); ``export`` packs them into the model as the
yamnet label file. Each class map here renames the classes with its own prefix, so the names say which was used.
"""

from __future__ import annotations

import csv
import io
import shutil
import zipfile
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from yamnet_beam.cli import main
from yamnet_beam.customize.export import YAMNET_LABELS_FILE
from yamnet_beam.job.checks import plan_run
from yamnet_beam.job.options import YamnetOptions


def _renamed(src: Path, dest: Path, prefix: str) -> Path:
    """A copy of the class map with every display name prefixed (same indices and MIDs)."""
    with src.open(newline="") as f:
        rows = list(csv.reader(f))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(rows[0])
        w.writerows([[i, mid, f"{prefix} {name}"] for i, mid, name in rows[1:]])
    return dest


@pytest.fixture(scope="module")
def places(tmp_path_factory, model_path, class_map_path) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("class_maps")
    model = d / "beside" / "yamnet.tflite"
    model.parent.mkdir()
    shutil.copyfile(model_path, model)  # the same bytes (SHA-256): heads trained on the shared model apply
    return {
        "model": model,
        "beside": _renamed(class_map_path, model.parent / "yamnet_class_map.csv", "BESIDE"),
        "env": _renamed(class_map_path, d / "env" / "map.csv", "ENV"),
        "flag": _renamed(class_map_path, d / "flag" / "map.csv", "FLAG"),
    }


CASES = [  # (pass --class_map, set the environment) -> the class map that wins
    ((True, True), "FLAG"),
    ((False, True), "ENV"),
    ((False, False), "BESIDE"),
]


def _run_names(places, fixtures_dir, tmp_path, flag: bool) -> tuple[str, ...]:
    argv = ["--input", str(fixtures_dir / "tone_1khz_16k.wav"), "--output", str(tmp_path / "out")]
    argv += ["--model", str(places["model"]), *(["--class_map", str(places["flag"])] if flag else [])]
    return plan_run(PipelineOptions(argv).view_as(YamnetOptions)).labels.names


def _export_names(places, head_dir, tmp_path, flag: bool) -> tuple[str, ...]:
    dest = tmp_path / "exported.tflite"
    argv = ["export", str(head_dir), "-o", str(dest), "--model", str(places["model"])]
    assert main(argv + (["--class_map", str(places["flag"])] if flag else [])) == 0
    with zipfile.ZipFile(io.BytesIO(dest.read_bytes())) as z:
        return tuple(z.read(YAMNET_LABELS_FILE).decode().splitlines())


@pytest.mark.parametrize(("given", "winner"), CASES)
def test_run_and_export_resolve_the_class_map_alike(
    given, winner, places, head_dir, fixtures_dir, tmp_path, monkeypatch
) -> None:
    flag, env = given
    if env:
        monkeypatch.setenv("YAMNET_BEAM_CLASS_MAP", str(places["env"]))
    else:
        monkeypatch.delenv("YAMNET_BEAM_CLASS_MAP", raising=False)
    run_names = _run_names(places, fixtures_dir, tmp_path, flag)
    export_names = _export_names(places, head_dir, tmp_path, flag)
    assert run_names[0] == f"{winner} Speech"  # class 0 of the AudioSet ontology, renamed by the winner
    assert export_names == run_names
