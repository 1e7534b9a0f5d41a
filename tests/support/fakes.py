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
    """A model whose every predict() raises ``error``: a crashing interpreter, or a worker being killed."""

    def __init__(self, error: BaseException):
        super().__init__()
        self.error = error

    def load(self) -> FakeModel:
        model = super().load()

        def predict(frames):
            raise self.error

        model.predict = predict
        return model


class FailingOnCallLoader(FakeModelLoader):
    """A model whose ``fail_at``-th predict() of each loaded instance raises, as a crashing interpreter would."""

    def __init__(self, fail_at: int):
        super().__init__()
        self.fail_at = fail_at

    def load(self) -> FakeModel:
        model = super().load()
        predict, fail_at = model.predict, self.fail_at

        def failing(frames):
            if model.calls + 1 == fail_at:
                model.calls += 1
                raise RuntimeError("interpreter crashed")
            return predict(frames)

        model.predict = failing
        return model
