"""The LiteRT binding: which TFLite interpreter is installed, and building one from model bytes.

Shared by the per-frame model (:mod:`.runtime`), the probe that confirms a front-end/CNN split
(:mod:`.split`) and the batched subgraphs (:mod:`.batched`), so that all load models the same way.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from yamnet_beam.model.graph import ModelError


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def interpreter_class() -> tuple[type, str]:
    """The installed ``Interpreter`` class and a name with its version (recorded with the output)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, f"ai-edge-litert {_version('ai-edge-litert')}"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter, f"tflite-runtime {_version('tflite-runtime')}"
    except ImportError as e:
        raise ModelError("no TFLite interpreter is installed: pip install ai-edge-litert") from e


def runtime_name() -> str:
    try:
        return interpreter_class()[1]
    except ModelError:
        return "unavailable (pip install ai-edge-litert)"


def make_interpreter(content: bytes, num_threads: int, what: str) -> Any:
    """An interpreter over ``content`` (default XNNPACK delegate); a load failure is a :class:`ModelError`."""
    cls = interpreter_class()[0]
    try:
        return cls(model_content=content, num_threads=num_threads)
    except (RuntimeError, ValueError) as e:
        raise ModelError(f"the TFLite runtime could not load {what}: {e}") from e
