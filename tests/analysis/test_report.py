"""yamnet_beam.analysis.report: one self-contained HTML page; rendered in headless Chromium when it is installed."""

from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.support.helpers import png_stats
from yamnet_beam.analysis import report
from yamnet_beam.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def page(scene, tmp_path_factory):  # noqa: F811
    dest = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", scene["out"], "-o", str(dest), "--sample", "2", "--top", "6"]) == 0
    return dest


def test_report_is_self_contained_with_real_content(scene, page):  # noqa: F811
    text = page.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(?!data:)', text)  # nothing fetched from elsewhere
    files = pq.read_table(f"{scene['out']}/files").to_pylist()
    broken = next(f for f in files if f["status"] == "error")
    assert html.escape(broken["path"]) in text and html.escape(broken["error"]) in text
    for f in files:
        assert html.escape(f["path"]) in text  # every file is in the errors or top-classes table
    assert scene["out"] in text and "sha256" in text
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 2
    for b64 in images:
        stats = png_stats(base64.b64decode(b64))
        assert stats["std"] > 20 and stats["colours"] > 50


def test_sample_paths_spread_and_deterministic():
    paths = [f"p{i:02d}" for i in range(10)]
    assert report.sample_paths(paths[::-1], 3) == ["p00", "p03", "p06"]
    assert report.sample_paths(paths, 20) == paths
    assert report.sample_paths(paths, 0) == []


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(page, tmp_path):
    shot = tmp_path / "shot.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1200,2400",
        page.as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    stats = png_stats(shot.read_bytes())
    assert (stats["width"], stats["height"]) == (1200, 2400)
    rgb = stats["rgb"].reshape(2400, 1200, 3).astype(int)
    # Text near the top (the title and tables), and the inlined plots lower down: dark heatmap cells.
    assert rgb[:200].std() > 10
    dark_rows = np.flatnonzero((rgb.sum(axis=2) < 150).sum(axis=1) > 50)
    assert len(dark_rows) > 20, "no plot visible in the rendered page"
    assert stats["colours"] > 200
