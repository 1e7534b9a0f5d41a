"""Tests for yamnet_beam.model.labels: class-map parsing, label resolution and CSV output."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import fsspec
import pytest

from tests.support import tflite_builder as tb
from yamnet_beam.model import NUM_CLASSES, ModelInfo, inspect_model
from yamnet_beam.model.labels import Labels, LabelsError, load_class_map, resolve_labels, write_labels_csv

NAMES = [f"Class {i}, with comma" if i % 7 == 0 else f"Class {i}" for i in range(NUM_CLASSES)]


def _class_map_text(n: int = NUM_CLASSES, names: list[str] | None = None) -> str:
    names = names if names is not None else NAMES
    return "index,mid,display_name\n" + "".join(f'{i},/m/x{i},"{names[i]}"\n' for i in range(n))


def _write(tmp_path: Path, text: str | bytes, name: str = "map.csv") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def _info(embedded: tuple[str, ...] | None, labels_file: str | None = None) -> ModelInfo:
    info = inspect_model(tb.fixed_model())
    return dataclasses.replace(info, embedded_labels=embedded, embedded_labels_file=labels_file)


def test_real_class_map(class_map_path: Path) -> None:
    labels = load_class_map(str(class_map_path))
    assert len(labels) == NUM_CLASSES
    assert labels.names[0] == "Speech" and labels.mids[0] == "/m/09x0r"
    assert labels.names[1] == "Child speech, kid speaking"  # quoted field with a comma
    assert labels.source == str(class_map_path)
    with open(class_map_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(labels.names) == [r["display_name"] for r in rows]


def test_real_model_uses_real_class_map(model_path: Path, class_map_path: Path) -> None:
    info = inspect_model(model_path.read_bytes(), uri=str(model_path))
    labels = resolve_labels(info, str(class_map_path))
    assert labels == load_class_map(str(class_map_path))


def test_rows_out_of_order_are_sorted_by_index(tmp_path: Path) -> None:
    text = "index,mid,display_name\n2,/m/c,C\n0,/m/a,A\n1,,B\n"
    labels = load_class_map(_write(tmp_path, text))
    assert labels.names == ("A", "B", "C")
    assert labels.mids == ("/m/a", None, "/m/c")


def test_columns_may_be_reordered_and_bom_is_ignored(tmp_path: Path) -> None:
    text = "\ufeffdisplay_name,index,mid\nA,0,/m/a\nB,1,/m/b\n"
    assert load_class_map(_write(tmp_path, text)).names == ("A", "B")


def test_load_class_map_from_fsspec_url() -> None:
    with fsspec.open("memory://labels/map.csv", "w") as f:
        f.write(_class_map_text())
    labels = load_class_map("memory://labels/map.csv")
    assert labels.names == tuple(NAMES) and labels.source == "memory://labels/map.csv"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("index,mid,display_name\n", "no rows"),
        ("index,name\n0,Speech\n", "missing column"),
        ("index,mid,display_name\n0,/m/a,A\n2,/m/c,C\n", "without gaps"),
        ("index,mid,display_name\n1,/m/a,A\n2,/m/c,C\n", "without gaps"),
        ("index,mid,display_name\n0,/m/a,A\n0,/m/b,B\n", "duplicate index 0"),
        ("index,mid,display_name\nzero,/m/a,A\n", "not an integer"),
        ("index,mid,display_name\n0,/m/a,\n", "empty display_name"),
        ("index,mid,display_name\n0,/m/a\n", "expected 3 fields"),
        (b"index,mid,display_name\n0,/m/a,\xff\xfe\n", "not UTF-8"),
    ],
    ids=["empty", "header-only", "no-columns", "gap", "starts-at-1", "dup", "non-int", "no-name", "short", "binary"],
)
def test_bad_class_maps(tmp_path: Path, text: str | bytes, message: str) -> None:
    with pytest.raises(LabelsError, match=message):
        load_class_map(_write(tmp_path, text))


def test_missing_class_map(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match="not found.*yamnet-beam download"):
        load_class_map(str(tmp_path / "absent.csv"))


def test_labels_error_is_a_value_error() -> None:
    assert issubclass(LabelsError, ValueError)


def test_embedded_labels_get_mids_from_a_matching_class_map(tmp_path: Path) -> None:
    labels = resolve_labels(_info(tuple(NAMES), "yamnet_label_list.txt"), _write(tmp_path, _class_map_text()))
    assert labels.names == tuple(NAMES)
    assert labels.mids == tuple(f"/m/x{i}" for i in range(NUM_CLASSES))
    assert labels.source == "model:yamnet_label_list.txt"


@pytest.mark.parametrize("class_map", ["mismatched", None])
def test_embedded_labels_win_without_mids(tmp_path: Path, class_map: str | None) -> None:
    uri = None
    if class_map:
        uri = _write(tmp_path, _class_map_text(names=[f"Other {i}" for i in range(NUM_CLASSES)]))
    labels = resolve_labels(_info(tuple(NAMES), "labels.txt"), uri)
    assert labels.names == tuple(NAMES)
    assert labels.mids == (None,) * NUM_CLASSES
    assert labels.source == "model:labels.txt"


def test_embedded_labels_from_a_real_zip_end_to_end(tmp_path: Path) -> None:
    model_bytes = tb.with_zip(tb.fixed_model(), {"yamnet_label_list.txt": "\n".join(NAMES)})
    labels = resolve_labels(inspect_model(model_bytes), _write(tmp_path, _class_map_text()))
    assert labels.names == tuple(NAMES) and labels.mids[3] == "/m/x3"
    assert labels.source == "model:yamnet_label_list.txt"


def test_class_map_used_when_model_has_no_labels(tmp_path: Path) -> None:
    uri = _write(tmp_path, _class_map_text())
    labels = resolve_labels(_info(None), uri)
    assert labels == Labels(tuple(NAMES), tuple(f"/m/x{i}" for i in range(NUM_CLASSES)), uri)


def test_no_labels_anywhere_is_an_error() -> None:
    with pytest.raises(LabelsError, match="no labels packed in it and no class map"):
        resolve_labels(_info(None), None)


def test_class_map_with_wrong_count_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match="has 520 classes but the model has 521"):
        resolve_labels(_info(None), _write(tmp_path, _class_map_text(520)))


def test_embedded_labels_with_wrong_count_are_an_error() -> None:
    with pytest.raises(LabelsError, match="packs 3 labels but has 521 classes"):
        resolve_labels(_info(("a", "b", "c")), None)


@pytest.mark.parametrize("target", ["local", "memory"])
def test_write_labels_csv_round_trips(tmp_path: Path, target: str) -> None:
    labels = Labels(names=("Speech", "Child speech, kid speaking", "Hum"), mids=("/m/09x0r", None, "/m/h"), source="x")
    uri = str(tmp_path / "out" / "sub" / "labels.csv") if target == "local" else "memory://out/labels.csv"
    write_labels_csv(labels, uri)
    with fsspec.open(uri, "r") as f:
        text = f.read()
    assert text == 'index,mid,display_name\n0,/m/09x0r,Speech\n1,,"Child speech, kid speaking"\n2,/m/h,Hum\n'
    again = load_class_map(uri)
    assert (again.names, again.mids) == (labels.names, labels.mids)
