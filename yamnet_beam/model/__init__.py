"""Model: the YAMNet TFLite model as data and as a function from frames to scores and embeddings.

Owns reading and rewriting the flatbuffer (:mod:`.graph`: validation, the structural search for the
embedding), running it with LiteRT, one interpreter per thread (:mod:`.runtime`), the 521 class names
(:mod:`.labels`) and fetching the official files (:mod:`.download`). May import
:mod:`yamnet_beam.framing` and :mod:`yamnet_beam.uris` only: no Beam, no DuckDB, no audio decoding,
so a notebook can embed frames without them.
"""

from yamnet_beam.model.graph import DOWNLOAD_HINT, EMBEDDING_DIM, NUM_CLASSES, ModelError
from yamnet_beam.model.runtime import (
    ModelInfo,
    YamnetModel,
    clear_model_cache,
    expose_embedding,
    inspect_model,
    read_model_bytes,
)

__all__ = [
    "DOWNLOAD_HINT",
    "EMBEDDING_DIM",
    "NUM_CLASSES",
    "ModelError",
    "ModelInfo",
    "YamnetModel",
    "clear_model_cache",
    "expose_embedding",
    "inspect_model",
    "read_model_bytes",
]
