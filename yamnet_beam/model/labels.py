"""Class labels for a YAMNet model: from the model file itself, or from a class-map CSV.

No Beam here: usable from a notebook. Labels packed in the model win because they are guaranteed
to belong to that model; the class map only adds AudioSet MIDs when its names agree.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass

from yamnet_beam.errors import UserError
from yamnet_beam.model.runtime import ModelInfo
from yamnet_beam.uris import local_or_url

log = logging.getLogger(__name__)

CLASS_MAP_COLUMNS = ("index", "mid", "display_name")
_FIX_HINT = (
    "pass the class map that belongs to this model (yamnet_class_map.csv, columns "
    "index,mid,display_name) or run `yamnet-beam download` to fetch the matching pair"
)


class LabelsError(UserError, ValueError):
    """Labels are missing, malformed or do not match the model; the message says what to do."""


@dataclass(frozen=True)
class Labels:
    """Display names (and AudioSet MIDs where known) indexed by class number."""

    names: tuple[str, ...]
    mids: tuple[str | None, ...]
    source: str

    def __len__(self) -> int:
        return len(self.names)


def _read_text(uri: str) -> str:
    import fsspec

    try:
        with fsspec.open(local_or_url(uri), "rb") as f:
            raw = f.read()
    except FileNotFoundError as e:
        raise LabelsError(f"class map not found: {uri}; {_FIX_HINT}") from e
    except (OSError, ValueError, ImportError) as e:
        raise LabelsError(f"could not read class map {uri}: {e}") from e
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelsError(f"class map {uri} is not UTF-8 text ({e}); {_FIX_HINT}") from e


def load_class_map(uri: str) -> Labels:
    """Load an ``index,mid,display_name`` CSV; indices must be exactly 0..n-1."""
    text = _read_text(uri)
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    except csv.Error as e:
        raise LabelsError(f"class map {uri} is not valid CSV: {e}") from e
    if not rows:
        raise LabelsError(f"class map {uri} is empty; {_FIX_HINT}")
    header = [c.strip() for c in rows[0]]
    missing = [c for c in CLASS_MAP_COLUMNS if c not in header]
    if missing:
        raise LabelsError(f"class map {uri} has header {header}, missing column(s) {missing}; {_FIX_HINT}")
    col = {c: header.index(c) for c in CLASS_MAP_COLUMNS}
    by_index: dict[int, tuple[str, str]] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) < len(header):
            raise LabelsError(f"class map {uri} line {line_no}: expected {len(header)} fields, got {row}")
        try:
            index = int(row[col["index"]])
        except ValueError as e:
            raise LabelsError(f"class map {uri} line {line_no}: index {row[col['index']]!r} is not an integer") from e
        name = row[col["display_name"]].strip()
        if not name:
            raise LabelsError(f"class map {uri} line {line_no}: empty display_name")
        if index in by_index:
            raise LabelsError(f"class map {uri} line {line_no}: duplicate index {index}")
        by_index[index] = (row[col["mid"]].strip(), name)
    n = len(by_index)
    if n == 0:
        raise LabelsError(f"class map {uri} has a header but no rows; {_FIX_HINT}")
    if sorted(by_index) != list(range(n)):
        gaps = sorted(set(range(n)) - set(by_index))[:5]
        raise LabelsError(
            f"class map {uri}: indices must be 0..{n - 1} without gaps (missing e.g. {gaps}, "
            f"max is {max(by_index)}); {_FIX_HINT}"
        )
    names = tuple(by_index[i][1] for i in range(n))
    mids = tuple(by_index[i][0] or None for i in range(n))
    return Labels(names=names, mids=mids, source=uri)


def resolve_labels(info: ModelInfo, class_map_uri: str | None) -> Labels:
    """Pick the labels for a model: embedded first, else the class map; counts must match."""
    class_map = load_class_map(class_map_uri) if class_map_uri else None
    if info.embedded_labels is not None:
        names = tuple(info.embedded_labels)
        if len(names) != info.num_classes:
            raise LabelsError(
                f"the model {info.uri or ''} packs {len(names)} labels but has {info.num_classes} "
                f"classes; the model file is inconsistent: {_FIX_HINT}"
            )
        mids: tuple[str | None, ...] = (None,) * len(names)
        if class_map is not None:
            if class_map.names == names:
                mids = class_map.mids
            else:
                log.warning(
                    "class map %s does not match the labels packed in the model; using the model's labels without MIDs",
                    class_map_uri,
                )
        source = f"model:{info.embedded_labels_file or 'embedded'}"
        return Labels(names=names, mids=mids, source=source)
    if class_map is None:
        raise LabelsError(
            f"the model {info.uri or ''} has no labels packed in it and no class map was given; {_FIX_HINT}"
        )
    if len(class_map) != info.num_classes:
        raise LabelsError(
            f"class map {class_map_uri} has {len(class_map)} classes but the model has {info.num_classes}; {_FIX_HINT}"
        )
    return class_map


def write_labels_csv(labels: Labels, uri: str) -> None:
    """Write ``index,mid,display_name`` next to the results so tables are self-describing."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(local_or_url(uri))
    parent = os.path.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CLASS_MAP_COLUMNS)
    for i, (mid, name) in enumerate(zip(labels.mids, labels.names, strict=True)):
        writer.writerow([i, mid or "", name])
    with fs.open(path, "wb") as f:
        f.write(buf.getvalue().encode("utf-8"))
