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
    """After the test no decode thread is left, nor any thread the test started (ending takes a moment).

    Threads are compared by identity, not counted: a thread an earlier test left that ends meanwhile
    must neither hide a leak nor fail this test, whatever order the tests run in.
    """
    before = set(threading.enumerate())

    def started() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in before]

    yield
    deadline = time.monotonic() + 10
    while (decode_threads() or started()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert decode_threads() == []
    assert started() == []


@pytest.fixture(autouse=True)
def _isolated_globals() -> Iterator[None]:
    """What a test leaves in process-wide state is removed after it, so no test depends on another's order:
    ``memory://`` files, fsspec protocols it registered, and model bytes cached for URIs it may reuse."""
    import sys

    from fsspec.implementations.memory import MemoryFileSystem

    registry = sys.modules["fsspec.registry"]._registry  # fsspec.registry itself is a read-only view
    protocols = dict(registry)
    store, dirs = set(MemoryFileSystem.store), set(MemoryFileSystem.pseudo_dirs)
    yield
    for name in set(registry) - set(protocols):
        cls = registry.pop(name)
        if hasattr(cls, "clear_instance_cache"):
            cls.clear_instance_cache()
    registry.update(protocols)  # one a test replaced (clobber=True) is restored
    wrote_memory = set(MemoryFileSystem.store) != store
    for key in set(MemoryFileSystem.store) - store:
        del MemoryFileSystem.store[key]
    MemoryFileSystem.pseudo_dirs[:] = [d for d in MemoryFileSystem.pseudo_dirs if d in dirs]
    if wrote_memory:  # model bytes are cached per URI: a later test may write other bytes under the same one
        from yamnet_beam.model import clear_model_cache

        clear_model_cache()


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
