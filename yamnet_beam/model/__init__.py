"""Model: the YAMNet TFLite model as data and as a function from frames to scores and embeddings.

Owns reading and rewriting the flatbuffer (:mod:`.graph`: validation, the structural search for the
embedding), the LiteRT binding (:mod:`.litert`), running it (:mod:`.runtime`), loading it where it
runs with the launcher's checks, one interpreter per thread (:mod:`.loader`), the batched path
(:mod:`.split` finds and cuts the front end and the CNN, :mod:`.batched` runs them over shared STFT rows
and batches of patches, bit-identical to per-frame invoke; :mod:`.multifile` runs many files as one queue,
CNN batches across files, the front end on a helper thread), the 521 class names (:mod:`.labels`), finding
the class map and fetching the official files (:mod:`.download`), and custom heads on the embedding
(:mod:`.head`: the head file, its checks and its numpy forward pass). May import the foundations
(:mod:`yamnet_beam.framing`, :mod:`yamnet_beam.uris`, :mod:`yamnet_beam.errors`) only: no Beam, no DuckDB,
no audio decoding, so a notebook can embed frames without them.
"""

from yamnet_beam.model.batched import DEFAULT_BATCH, FrameResults, FrameStream, open_stream
from yamnet_beam.model.graph import DOWNLOAD_HINT, EMBEDDING_DIM, NUM_CLASSES, ModelError
from yamnet_beam.model.multifile import MultiFileStream, open_multi_stream
from yamnet_beam.model.runtime import (
    ModelInfo,
    YamnetModel,
    clear_model_cache,
    expose_embedding,
    inference_path,
    inspect_model,
    read_model_bytes,
)

__all__ = [
    "DEFAULT_BATCH",
    "DOWNLOAD_HINT",
    "EMBEDDING_DIM",
    "NUM_CLASSES",
    "FrameResults",
    "FrameStream",
    "ModelError",
    "ModelInfo",
    "MultiFileStream",
    "YamnetModel",
    "clear_model_cache",
    "expose_embedding",
    "inference_path",
    "inspect_model",
    "open_multi_stream",
    "open_stream",
    "read_model_bytes",
]
