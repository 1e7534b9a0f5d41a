"""scikit-learn, imported lazily (``pip install "yamnet-beam[train]"``), and the error of training a head.

Below :mod:`.calibrate` and :mod:`.train`, which both need it, so neither imports the other for it.
"""

from __future__ import annotations

import importlib

from yamnet_beam.errors import UserError


class TrainError(UserError, ValueError):
    """The labels or the output cannot train a head as asked; the message says what to do."""


def sklearn_module(name: str):
    """``sklearn.<name>``, or a :class:`TrainError` saying how to install it."""
    try:
        return importlib.import_module(f"sklearn.{name}")
    except ImportError as e:
        raise TrainError('training a head needs scikit-learn: pip install "yamnet-beam[train]"') from e
