"""A fake model for tests that need the pipeline's plumbing, not YAMNet's numbers (the seam in ModelLoader)."""

import numpy as np

from yamnet_beam.model.loader import ModelLoader


class FakeModel:
    """Deterministic, cheap stand-in: embedding = first 1024 samples, scores = a fixed projection of them."""

    def __init__(self):
        rng = np.random.default_rng(42)
        self.weights = rng.standard_normal((1024, 521)).astype(np.float32) / 32
        self.calls = 0

    def predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        emb = np.ascontiguousarray(frames[:, :1024], dtype=np.float32)
        scores = 1 / (1 + np.exp(-(emb @ self.weights)))
        return scores.astype(np.float32), emb


class FakeModelLoader(ModelLoader):
    """Picklable like the real loader; builds a FakeModel and records how often it was asked."""

    loads = 0

    def __init__(self):
        super().__init__(uri="fake://model")

    def load(self) -> FakeModel:
        FakeModelLoader.loads += 1
        return FakeModel()


class FailingModelLoader(FakeModelLoader):
    """A model whose predict() raises ``error``: every call (a crashing interpreter, or a worker being killed),
    or only the ``fail_at``-th call of each loaded instance (an interpreter crashing once)."""

    def __init__(self, error: BaseException, fail_at: int | None = None):
        super().__init__()
        self.error, self.fail_at = error, fail_at

    def load(self) -> FakeModel:
        model = super().load()
        predict = model.predict

        def failing(frames):
            if self.fail_at is None or model.calls + 1 == self.fail_at:
                model.calls += 1
                raise self.error
            return predict(frames)

        model.predict = failing
        return model


def FailingOnCallLoader(fail_at: int) -> FailingModelLoader:  # noqa: N802 - reads as the loader it makes
    """A model whose ``fail_at``-th predict() raises "interpreter crashed"."""
    return FailingModelLoader(RuntimeError("interpreter crashed"), fail_at)
