"""yamnet-beam: large audio collections to queryable Parquet tables of YAMNet scores and embeddings."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("yamnet-beam")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
