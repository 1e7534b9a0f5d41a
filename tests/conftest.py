"""Shared test fixtures: the real model, class map and audio fixtures live outside the repo.

They are found through ``YAMNET_BEAM_SHARED`` (default ``<repo>/../shared``). They are never
committed; if they are missing the tests fail loudly instead of silently skipping.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.helpers import LoopbackHTTPServer, decode_threads

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    d = Path(os.environ.get("YAMNET_BEAM_SHARED", REPO.parent / "shared")).resolve()
    if not (d / "models" / "yamnet.tflite").is_file():
        raise RuntimeError(
            f"Shared test resources not found in {d}: set YAMNET_BEAM_SHARED to the folder holding "
            "models/yamnet.tflite, models/yamnet_class_map.csv and fixtures/audio/."
        )
    return d


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _shared_dir()


@pytest.fixture(scope="session")
def model_path(shared_dir: Path) -> Path:
    return shared_dir / "models" / "yamnet.tflite"


@pytest.fixture(scope="session")
def class_map_path(shared_dir: Path) -> Path:
    return shared_dir / "models" / "yamnet_class_map.csv"


@pytest.fixture(scope="session")
def fixtures_dir(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "audio"


@pytest.fixture(scope="session")
def model_args(model_path: Path, class_map_path: Path) -> list[str]:
    """``--model``/``--class_map`` for the shared model: what every test run of the job passes."""
    return ["--model", str(model_path), "--class_map", str(class_map_path)]


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    """After the test no decode thread is left and the thread count is back where it was (ending takes a moment)."""
    before = threading.active_count()
    yield
    deadline = time.monotonic() + 10
    while (decode_threads() or threading.active_count() > before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert decode_threads() == []
    assert threading.active_count() == before


@pytest.fixture
def http_server() -> Iterator[Callable[[Path], LoopbackHTTPServer]]:
    """Starts a :class:`LoopbackHTTPServer` for a directory; all are shut down after the test."""
    servers: list[LoopbackHTTPServer] = []

    def start(root: Path) -> LoopbackHTTPServer:
        servers.append(LoopbackHTTPServer(root))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
