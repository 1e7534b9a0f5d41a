"""Committed output parts written by hand (PartWriter, as the job commits them), for tests of resume and drops."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from yamnet_beam import framing
from yamnet_beam.table import schema
from yamnet_beam.table.parts import PartWriter


def frames(path: str, count: int):
    """``count`` zero frames of ``path`` with the real framing times."""
    s = schema.frames_schema()
    start, end = framing.frame_times(0, count)
    return schema.frames_table(
        s,
        path,
        0,
        start,
        end,
        framing.valid_samples(0, count, 10**6),
        np.zeros((count, 521), np.float32),
        np.zeros((count, 1024), np.float32),
        [str(i) for i in range(521)],
    )


def row(path: str, status: str = "ok", frames: int = 0, part: str = "p", fingerprint: str = "fp", **kw):
    return schema.file_row(path, status=status, frames=frames, fingerprint=fingerprint, part=part, **kw)


def commit(out: Path | str, pid: str, paths: Sequence[str], frames_per_file: int = 3, row_group_rows: int = 4, **kw):
    """One committed part holding ``paths`` (frames then files marker); ``kw`` goes into every files row."""
    w = PartWriter(str(out), pid, schema.frames_schema(metadata={"x": 1}), schema.files_schema(), row_group_rows)
    for p in paths:
        w.add(frames(p, frames_per_file))
    fields = {"size_bytes": 10, "mtime": 1.0, **kw}
    w.commit([row(p, frames=frames_per_file, part=pid, **fields) for p in paths])
