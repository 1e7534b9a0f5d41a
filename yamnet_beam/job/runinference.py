"""YAMNet for ``apache_beam.ml.inference.RunInference``: put the model in your own pipelines.

    from apache_beam.ml.inference.base import RunInference
    from yamnet_beam.job.runinference import YamnetModelHandler

    results = waveforms | RunInference(YamnetModelHandler("models/yamnet.tflite"))
    # each result: PredictionResult(example, {"scores": [F, 521], "embeddings": [F, 1024]}, model_id)

Each example is either one 16 kHz mono float waveform (1-D; it is framed exactly as the main job
frames it: 0.975 s windows every ``hop_seconds``) or a ``[F, 15600]`` batch of frames. Like the main
job it runs the model batched (:meth:`~yamnet_beam.model.YamnetModel.embed`: shared STFT rows, the
CNN over ``frames_per_batch`` frames per invoke) where the graph allows, with the same numbers as
per-frame ``invoke()``.

Threads: RunInference loads the model once per *process* and hands the same object to every
thread running the DoFn (``beam.utils.shared.Shared``), and with ``large_model``/``model_copies``
it serves one copy to concurrent callers from another process. A TFLite interpreter is not
thread-safe, so :meth:`YamnetModelHandler.load_model` returns a
:class:`~yamnet_beam.model.loader.PerThreadYamnet`, which builds one model per calling thread on first
use, with the job's :class:`~yamnet_beam.model.loader.ModelLoader`.
The model bytes are read and analysed once per process (cached in :mod:`yamnet_beam.model`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from yamnet_beam import framing
from yamnet_beam.model import DEFAULT_BATCH
from yamnet_beam.model.loader import ModelLoader, PerThreadYamnet


def check_example(example: np.ndarray) -> np.ndarray:
    """An example as an array: a 1-D 16 kHz mono waveform or ``[F, 15600]`` frames, else a ValueError."""
    x = np.asarray(example)
    if x.ndim == 1 or (x.ndim == 2 and x.shape[1] == framing.WINDOW_SAMPLES):
        return x
    raise ValueError(
        f"a YAMNet example is a 1-D 16 kHz mono waveform or a [F, {framing.WINDOW_SAMPLES}] frame batch, "
        f"got shape {list(x.shape)}"
    )


class YamnetModelHandler(ModelHandler[np.ndarray, PredictionResult, PerThreadYamnet]):
    """RunInference handler for YAMNet (TFLite via LiteRT), sharing :mod:`yamnet_beam.model` with the main job."""

    def __init__(
        self,
        model_uri: str,
        hop_seconds: float = framing.HOP_SAMPLES / framing.SAMPLE_RATE,
        num_threads: int = 1,
        frames_per_batch: int = DEFAULT_BATCH,
        **kwargs: Any,
    ) -> None:
        """``frames_per_batch``: frames per CNN invoke; ``kwargs`` go to :class:`ModelHandler` (e.g.
        ``max_batch_size``, examples per call, or ``large_model``)."""
        super().__init__(**kwargs)
        if frames_per_batch < 1:
            raise ValueError(f"frames_per_batch must be >= 1, got {frames_per_batch}")
        self._model_uri = model_uri
        self._hop = framing.hop_samples_from_seconds(hop_seconds)
        self._num_threads = num_threads
        self._batch = frames_per_batch

    def load_model(self) -> PerThreadYamnet:
        return PerThreadYamnet(ModelLoader(self._model_uri, self._num_threads))

    def update_model_path(self, model_path: str | None = None) -> None:
        if model_path:
            self._model_uri = model_path

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: PerThreadYamnet,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        if inference_args:
            raise ValueError(f"YamnetModelHandler takes no inference_args, got {sorted(inference_args)}")
        examples = [check_example(x) for x in batch]  # all checked before any runs
        for example, x in zip(batch, examples, strict=True):
            scores, embeddings = model.embed(x, self._hop, self._batch)
            yield PredictionResult(example, {"scores": scores, "embeddings": embeddings}, self._model_uri)

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(int(np.asarray(x).nbytes) for x in batch)

    def get_metrics_namespace(self) -> str:
        return "YamnetRunInference"
