"""Loading the model where it runs: one picklable recipe, one set of checks, one interpreter per thread.

A LiteRT interpreter is not thread-safe, and the bytes a worker loads must be the ones the launcher
checked. :class:`ModelLoader` is the recipe every stage ships to where the model runs (the job's DoFns
build their model with it in ``setup()``; it is the seam tests use to inject a fake);
:class:`PerThreadYamnet` builds one model per calling thread from a loader, for callers that share one
object between threads (RunInference). The model bytes are read and analysed once per process
(:func:`yamnet_beam.model.read_model_bytes`).
"""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from yamnet_beam import framing
from yamnet_beam.model.batched import DEFAULT_BATCH
from yamnet_beam.model.graph import ModelError
from yamnet_beam.model.runtime import ModelInfo, YamnetModel


class FrameModel(Protocol):
    """What the pipeline needs of a model: ``[F, 15600]`` float32 frames in, scores and embeddings out.

    A model that also has ``stream(hop, batch)`` (:class:`~yamnet_beam.model.YamnetModel`) is run
    through it, batched where its graph allows; see :func:`yamnet_beam.model.open_stream`.
    """

    def predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class ModelLoader:
    """Picklable recipe for a model, checked where it is built against what the launcher found."""

    def __init__(
        self, uri: str, num_threads: int = 1, expected_sha256: str | None = None, inference: str | None = None
    ):
        self.uri = uri
        self.num_threads = num_threads
        self.expected_sha256 = expected_sha256
        self.inference = inference  # "batched" / "per_frame" as the launcher found it; None: whatever works here

    def load(self) -> FrameModel:
        model = YamnetModel.from_uri(self.uri, num_threads=self.num_threads, batched=self.inference != "per_frame")
        # The launcher checked the model and stamped its SHA-256 on every table: a worker that sees
        # other bytes at that URI (replaced mid-run, another node's copy) must not write rows.
        if self.expected_sha256 and model.info.sha256 != self.expected_sha256:
            raise ModelError(
                f"{self.uri} changed since the job started: SHA-256 {model.info.sha256}, expected "
                f"{self.expected_sha256}; give workers the same model file"
            )
        # ... and recorded which inference path runs: a worker whose runtime cannot run it must not either.
        if self.inference == "batched" and not model.has_batched_path:
            raise ModelError(
                f"{self.uri}: the launcher runs it batched, but this worker ({model.info.runtime}) cannot build "
                "batched subgraphs bit-identical to per-frame invoke; give workers the launcher's LiteRT version"
            )
        return model


class PerThreadYamnet:
    """A thread-safe stand-in for :class:`YamnetModel`: one model per thread that calls it, from one loader."""

    def __init__(self, loader: ModelLoader | str, num_threads: int = 1) -> None:
        self.loader = loader if isinstance(loader, ModelLoader) else ModelLoader(loader, num_threads)
        self.uri = self.loader.uri
        self._local = threading.local()
        self.info: ModelInfo = self.model().info  # load now, so a bad model fails at once

    def model(self) -> YamnetModel:
        """This thread's model (built on the thread's first call)."""
        m = getattr(self._local, "model", None)
        if m is None:
            m = self._local.model = self.loader.load()
        return m

    def predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores [F, 521] and embeddings [F, 1024] for frames [F, 15600], per-frame invoke on this thread's model."""
        return self.model().predict(frames)

    def embed(
        self, example: np.ndarray, hop_samples: int = framing.HOP_SAMPLES, batch: int = DEFAULT_BATCH
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`YamnetModel.embed` (batched where possible) on this thread's model."""
        return self.model().embed(example, hop_samples, batch)
